"""A copy of every file before it is edited, and the way back.

As certbot keeps its installer's checkpoints under the work directory (`backups/`),
each `Checkpoint` is a directory there holding the files' original bytes and modes
and `files.json` (original path -> copy, or null for a file the edit created). A
rollback writes every original back byte for byte and removes the created files. A
temporary checkpoint (the http-01 answer) is removed once it is rolled back; a kept
one (an installation) stays for `acmekit rollback`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from acmekit.files import atomic_write

INDEX = "files.json"


class Checkpoint:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, str | None] = {}
        if (directory / INDEX).exists():
            self._files = json.loads((directory / INDEX).read_text())

    @classmethod
    def new(cls, backups: Path, label: str) -> Checkpoint:
        backups.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for n in range(1000):
            directory = backups / f"{stamp}-{n:03d}-{label}"
            try:
                directory.mkdir(mode=0o700)
            except FileExistsError:
                continue
            return cls(directory)
        raise OSError(f"no free checkpoint name under {backups}")

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self._files]

    def save(self, path: Path) -> None:
        """Keep `path`'s bytes and mode before the first edit (later saves are no-ops)."""
        path = path.resolve()  # a symlinked file (sites-enabled/) is saved as its target
        key = str(path)
        if key in self._files:
            return
        if path.exists():
            copy = f"{len(self._files):04d}-{path.name}"
            shutil.copy2(path, self.directory / copy)
            self._files[key] = copy
        else:
            self._files[key] = None
        self._write_index()

    def _write_index(self) -> None:
        atomic_write(self.directory / INDEX, json.dumps(self._files, indent=1).encode(), 0o600)

    def rollback(self) -> None:
        """Every saved file as it was; every file created since removed."""
        for original, copy in self._files.items():
            target = Path(original)
            if copy is None:
                target.unlink(missing_ok=True)
                continue
            source = self.directory / copy
            atomic_write(target, source.read_bytes(), source.stat().st_mode & 0o7777)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def checkpoints(backups: Path) -> list[Checkpoint]:
    """The kept checkpoints, oldest first."""
    if not backups.is_dir():
        return []
    return [Checkpoint(d) for d in sorted(backups.iterdir()) if (d / INDEX).exists()]

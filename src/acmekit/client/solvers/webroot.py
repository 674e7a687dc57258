"""http-01 answered by an existing web server: files under its document roots.

Like certbot's `--webroot -w DIR -d NAME`: for each challenge the key authorization is
written to `ROOT/.well-known/acme-challenge/TOKEN` (RFC 8555 §8.3), where ROOT is the
root mapped to the identifier's name, or `default_root`. Directories the solver has to
create get mode 0755 and the file 0644, whatever the umask, so that a web server
running as another user can read them. Cleanup removes the file and then, once no
challenge under that root is left, the directories this solver created if they are
empty; directories that were there before are never removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from acmekit.client.resources import Challenge
from acmekit.client.solvers.errors import WebrootError
from acmekit.protocol.challenges import HTTP01_PATH, token_is_wellformed
from acmekit.protocol.messages import Identifier

log = logging.getLogger(__name__)

CHALLENGE_DIR = Path(HTTP01_PATH.strip("/"))  # .well-known/acme-challenge
DIR_MODE = 0o755
FILE_MODE = 0o644


class WebrootSolver:
    def __init__(self, roots: Mapping[str, Path], default_root: Path | None = None) -> None:
        self.roots = {name.lower(): Path(root) for name, root in roots.items()}
        self.default_root = default_root
        self._created: dict[Path, list[Path]] = {}  # root -> dirs we made, deepest last
        self._live: dict[Path, int] = {}  # challenge file -> presents not yet cleaned up
        self._lock = asyncio.Lock()  # presents and cleanups run concurrently in one order

    def root_for(self, identifier: Identifier) -> Path:
        """The webroot serving `identifier`, or WebrootError if none is configured."""
        root = self.roots.get(identifier.value.lower(), self.default_root)
        if root is None:
            raise WebrootError(
                f"no webroot for {identifier.value}: give one with -w DIR before -d"
                f" {identifier.value}"
            )
        return root

    def challenge_path(self, identifier: Identifier, challenge: Challenge) -> Path:
        token = challenge.token or ""
        if not token_is_wellformed(token):
            raise WebrootError(f"refusing to write a file for a malformed token {token!r}")
        return self.root_for(identifier) / CHALLENGE_DIR / token

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        path = self.challenge_path(identifier, challenge)
        root = self.root_for(identifier)
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, root, path, key_authorization)
            except OSError as exc:
                raise WebrootError(f"cannot write the challenge file {path}: {exc}") from exc
            self._live[path] = self._live.get(path, 0) + 1
        log.debug("http-01 file for %s written under %s", identifier.value, root)

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        path = self.challenge_path(identifier, challenge)
        async with self._lock:
            count = self._live.get(path, 0)
            if count > 1:
                self._live[path] = count - 1
                return
            self._live.pop(path, None)
            await asyncio.to_thread(self._remove, self.root_for(identifier), path)

    def _write(self, root: Path, path: Path, content: str) -> None:
        if not root.is_dir():
            raise OSError(f"webroot {root} is not a directory")
        self._make_dirs(root, path.parent)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(content, encoding="ascii")
        tmp.chmod(FILE_MODE)
        tmp.replace(path)

    def _make_dirs(self, root: Path, target: Path) -> None:
        created = self._created.setdefault(root, [])
        current = root
        for part in target.relative_to(root).parts:
            current = current / part
            try:
                current.mkdir()
            except FileExistsError:
                continue
            current.chmod(DIR_MODE)
            created.append(current)

    def _remove(self, root: Path, path: Path) -> None:
        path.unlink(missing_ok=True)
        if any(p.is_relative_to(root) for p in self._live):
            return
        for directory in reversed(self._created.pop(root, [])):
            try:
                directory.rmdir()
            except OSError:
                log.debug("leaving %s: not empty", directory)
                break

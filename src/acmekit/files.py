"""Crash-safe file writes shared by the CA, the client, the DNS server and the fleet.

A file is written to a temporary name in the same directory, created with its final mode
(0600 for private keys from the first byte), flushed and fsynced, then renamed over the
old one (`os.replace`, atomic on POSIX), and the directory is fsynced so the rename
survives a crash. Readers see the old content or the new, never part of either.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


def make_dirs(path: Path, mode: int = 0o755) -> None:
    """`path` and its missing parents, new ones with `mode`; an existing one is kept."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` in one step; the file has `mode` from its creation."""
    atomic_write_together([(path, data, mode)])


def atomic_write_together(files: Sequence[tuple[Path, bytes, int]]) -> None:
    """`atomic_write` of several (path, data, mode) in one directory, every one written
    and synced before any replaces its file: a failure while writing (a full disk)
    leaves every old file, so a pair such as a key and its certificate never ends up
    half new. The renames follow one another; a crash between two of them is the one
    window left."""
    written: list[tuple[str, Path]] = []
    try:
        for path, data, mode in files:
            written.append((_synced_temp(path, data, mode), path))
        for tmp, path in written:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    for parent in dict.fromkeys(path.parent for _, path in written):
        fsync_dir(parent)


def _synced_temp(path: Path, data: bytes, mode: int) -> str:
    """A new file beside `path` holding `data`, with `mode` before any byte is written
    (a key is never readable by others, not even for a moment), synced and closed; its
    name. Nothing is left behind (descriptor or file) when any step fails."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_symlink(target: str, link: Path) -> None:
    """Point `link` at `target` (relative as given), replacing any old link in one step."""
    tmp = link.parent / f".{link.name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)

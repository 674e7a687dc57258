"""Per-lineage locks: `fcntl.flock` on `WORK_DIR/locks/NAME.lock`.

One lock per certificate name, not per config dir, so runs for different names go
ahead at once while two runs for the same name take turns. The holder follows
certmagic's pattern: take the lock, look at the files again, then act. The lock is
the open file: it goes away with the process, so a crash never leaves it held.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from acmekit.client.errors import ClientError

POLL_INTERVAL = 0.1


class LockTimeout(ClientError):
    """Another process held the lineage's lock for longer than we were willing to wait."""


def lock_path(work_dir: Path, name: str) -> Path:
    return work_dir / "locks" / f"{name}.lock"


def try_lock(path: Path) -> int | None:
    """An open, locked descriptor for `path`, or None when another holder has it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@asynccontextmanager
async def lineage_lock(work_dir: Path, name: str, wait_seconds: float) -> AsyncIterator[None]:
    """Hold the lock for `name`, waiting up to `wait_seconds` for another holder."""
    path = lock_path(work_dir, name)
    deadline = time.monotonic() + wait_seconds
    fd = try_lock(path)
    while fd is None:
        if time.monotonic() >= deadline:
            raise LockTimeout(f"certificate {name} is locked by another run ({path})")
        await asyncio.sleep(POLL_INTERVAL)
        fd = try_lock(path)
    try:
        yield
    finally:
        os.close(fd)

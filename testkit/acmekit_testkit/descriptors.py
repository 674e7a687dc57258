"""A process's open descriptors, for tests that a cancelled lookup leaves no socket open
(uvloop does not close a datagram socket whose opening was cancelled)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable

Descriptors = frozenset[tuple[str, str]]


def open_descriptors() -> Descriptors:
    """The process's open descriptors, each with what it is ("socket:[inode]")."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except FileNotFoundError:  # the directory's own, closed by now
            continue
    return frozenset(found)


async def settle() -> None:
    """Let the loop run the closes already scheduled (a transport closes on a later turn)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def cancelled_after(turns: int, lookup: Awaitable[object]) -> None:
    """`lookup` cancelled after `turns` turns of the loop (as a validation's bound does)."""
    asking = asyncio.ensure_future(lookup)
    for _ in range(turns):
        await asyncio.sleep(0)
    asking.cancel()
    await asyncio.gather(asking, return_exceptions=True)

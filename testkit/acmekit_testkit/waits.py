"""Waiting in a test for a server to reach a state it shows only by its own fields."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition` to hold (generously bounded, 30 s, so a hang fails)."""
    for _ in range(1200):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the server never got there")

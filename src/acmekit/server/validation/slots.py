"""Slots: at most so many lookups in flight at once, the rest waiting their turn.

`asyncio.Semaphore` would do, but its every acquisition is a coroutine and its `locked`
walks the waiters, where a CAA check takes a slot for each batch of its climb: here a
free slot is taken without waiting or a coroutine (`take`), and only a lookup that finds
none waits (`wait`), first come first served, until a slot is given back (`give`) or
its time is up. One event loop's, as its futures are.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """`size` slots on `loop`."""

    __slots__ = ("_free", "_waiting", "loop")

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self._free = size
        self.loop = loop
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """A free slot at once, unless there is none or others are waiting for one."""
        if self._free and not self._waiting:
            self._free -= 1
            return True
        return False

    async def wait(self, end: float) -> None:
        """A slot, once one is given back and those waiting before have theirs; raises
        TimeoutError at loop time `end`."""
        turn = self.loop.create_future()
        self._waiting.append(turn)
        try:
            async with asyncio.timeout_at(end):
                await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.give()  # handed a slot as the wait ended: the next one's
            elif turn in self._waiting:  # (`give` may have passed over it already)
                self._waiting.remove(turn)
            raise

    def give(self) -> None:
        """A slot given back: to the first still waiting, else free."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1

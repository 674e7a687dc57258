"""Slots: at most so many lookups in flight at once, the rest waiting their turn, each
holder (an ACME account) with at most its share.

`asyncio.Semaphore` would do for the total, but its every acquisition is a coroutine and
its `locked` walks the waiters, where a CAA check takes a slot for each batch of its
climb: here a free slot is taken without waiting or a coroutine (`take`), and only a
lookup that finds none waits (`wait`) until a slot is given back (`give`) or its time is
up. One event loop's, as its futures are.

Shared first come first served, one account whose names lead to silent nameservers
(each lookup holding its slot until its timeout) could hold every slot and queue ahead of
everyone else, so that another account's check waited out its own time and failed
closed. So a key (the account) holds at most `per_key` slots at once, and when a slot is
given back the keys waiting take turns, round robin (each key's own waits in order): a
key under its share gets a free slot at once, and waits behind at most one turn of each
other key waiting. Keys at their share that wait do not stop others taking free slots.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict


class Slots:
    """`size` slots on `loop`, at most `per_key` of them held by one key (None: no
    bound but the total)."""

    __slots__ = ("_free", "_held", "_per_key", "_queues", "_turns", "loop")

    def __init__(
        self, size: int, loop: asyncio.AbstractEventLoop, per_key: int | None = None
    ) -> None:
        self._free = size
        self._per_key = size if per_key is None else min(per_key, size)
        self.loop = loop
        self._held: dict[str, int] = {}  # slots held, by key (none: no entry)
        # Ordered sets (`OrderedDict`s of None), not lists: a wait that ends unserved
        # (a timeout, a cancellation) leaves them by its hash, where a list's `remove`
        # compared it with every wait before it, quadratic in a storm of them.
        self._queues: dict[str, OrderedDict[asyncio.Future[None], None]] = {}  # waits, by key
        self._turns: OrderedDict[str, None] = OrderedDict()  # keys waiting, next served first

    def take(self, key: str) -> bool:
        """A free slot for `key` at once, unless there is none, `key` holds its share, or
        waits of its own came first. (Whenever a slot is free, every key waiting holds
        its share: `give` hands slots to the others.)"""
        if self._free and self._held.get(key, 0) < self._per_key and key not in self._queues:
            self._free -= 1
            self._held[key] = self._held.get(key, 0) + 1
            return True
        return False

    async def wait(self, key: str, end: float) -> None:
        """A slot for `key`, once one is given back and it is `key`'s turn; raises
        TimeoutError at loop time `end`."""
        if self.take(key):
            return
        turn = self.loop.create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = OrderedDict()
            self._turns[key] = None
        queue[turn] = None
        try:
            async with asyncio.timeout_at(end):
                await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.give(key)  # handed a slot as the wait ended: the next one's
            else:  # (`give` may have passed over it already)
                self._leave(key, turn)
            raise

    def give(self, key: str) -> None:
        """A slot of `key`'s given back: to the next key in turn still waiting and under
        its share, else free."""
        held = self._held[key] - 1
        if held:
            self._held[key] = held
        else:
            del self._held[key]
        for _ in range(len(self._turns)):
            waiting = next(iter(self._turns))
            self._turns.move_to_end(waiting)  # served or not, its turn has passed
            if self._held.get(waiting, 0) < self._per_key and self._hand(waiting):
                return
        self._free += 1

    def _hand(self, key: str) -> bool:
        """Hand a slot to `key`'s first wait still waiting; whether there was one. A key
        left with no wait leaves the turns."""
        queue = self._queues[key]
        handed = False
        while queue and not handed:
            turn, _ = queue.popitem(last=False)
            if not turn.done():
                turn.set_result(None)
                self._held[key] = self._held.get(key, 0) + 1
                handed = True
        if not queue:
            del self._queues[key]
            del self._turns[key]
        return handed

    def _leave(self, key: str, turn: asyncio.Future[None]) -> None:
        """`turn`, ended without a slot, out of `key`'s queue."""
        queue = self._queues.get(key)
        if queue is None or turn not in queue:
            return
        del queue[turn]
        if not queue:
            del self._queues[key]
            del self._turns[key]

"""Slots (`validation.slots`) under random interleavings of take, wait, give, time out
and cancel on a real event loop, its invariants checked whenever the loop is idle:
no slot lost or made up, no key above its share, turns and queues in step, and no
wait left waiting while a slot is free and its key is under its share. Every run ends
with every slot free (none leaked to a waiter cancelled, none given twice)."""

from __future__ import annotations

import asyncio
import random

import pytest

from acmekit.server.validation.slots import Slots

KEYS = tuple(f"https://ca.test/acct/{n}" for n in range(6))
RUNS = 150


def _check(slots: Slots, size: int) -> None:
    held = slots._held
    per_key = slots._per_key
    assert slots._free >= 0
    assert slots._free + sum(held.values()) == size
    assert all(0 < n <= per_key for n in held.values())
    assert list(slots._turns) == list(dict.fromkeys(slots._turns))  # each key once
    assert set(slots._turns) == set(slots._queues)
    assert all(slots._queues.values())  # no empty queue kept
    if slots._free:
        for key, queue in slots._queues.items():
            live = [turn for turn in queue if not turn.done()]
            assert not live or held.get(key, 0) >= per_key, (key, held, slots._free)


async def _idle() -> None:
    """Until every callback made ready has run (a few turns of the loop)."""
    for _ in range(4):
        await asyncio.sleep(0)


async def _user(slots: Slots, key: str, hold: int, end: float, served: list[str]) -> None:
    """As the checker uses a slot: taken or waited for, held a while, given back."""
    if not slots.take(key):
        try:
            await slots.wait(key, end)
        except TimeoutError:
            return
    try:
        served.append(key)
        for _ in range(hold):
            await asyncio.sleep(0)
    finally:
        slots.give(key)


async def _run(seed: int) -> None:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    size = rng.randint(1, 6)
    per_key = rng.choice([None, 1, 2, 3])
    slots = Slots(size, loop, per_key)
    keys = KEYS[: rng.randint(1, len(KEYS))]
    served: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    for _ in range(rng.randint(5, 60)):
        action = rng.random()
        if action < 0.55:
            # A wait ending now races a slot given back in the same turn of the loop.
            end = loop.time() + rng.choice([0.0, -1.0, 3600.0, 3600.0, 3600.0])
            user = _user(slots, rng.choice(keys), rng.randint(0, 3), end, served)
            tasks.append(asyncio.ensure_future(user))
        elif action < 0.8 and tasks:
            rng.choice(tasks).cancel()
        elif action < 0.9 and tasks:  # a storm: many cancelled at once
            for task in rng.sample(tasks, min(len(tasks), rng.randint(1, 5))):
                task.cancel()
        if rng.random() < 0.6:
            for _ in range(rng.randint(1, 3)):
                await asyncio.sleep(0)
        if rng.random() < 0.5:
            await _idle()
            _check(slots, size)
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    assert all(task.done() for task in tasks)  # none waits for ever
    _check(slots, size)
    assert slots._free == size and not slots._held and not slots._queues and not slots._turns


@pytest.mark.parametrize("seed", range(RUNS))
async def test_random_interleavings_keep_the_slots_whole(seed: int) -> None:
    await _run(seed)


async def test_a_key_waiting_is_served_within_one_turn_of_each_other_key() -> None:
    """Round robin: a key's one wait behind another key's many is served after at most
    one of theirs."""
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop, 1)
    flood, lone = KEYS[0], KEYS[1]
    assert slots.take(flood)
    served: list[str] = []
    end = loop.time() + 3600
    many = [asyncio.ensure_future(_user(slots, flood, 1, end, served)) for _ in range(10)]
    await _idle()
    one = asyncio.ensure_future(_user(slots, lone, 1, end, served))
    await _idle()
    slots.give(flood)
    await asyncio.gather(*many, one)
    assert served.index(lone) <= 1


class _Counted:
    """Equality tests made, by the waits' futures and the keys: a wait leaving its queue
    should find it by its hash, not by comparing it with every other wait."""

    calls = 0


class _Turn(asyncio.Future[None]):
    def __eq__(self, other: object) -> bool:
        _Counted.calls += 1
        return self is other

    __hash__ = asyncio.Future.__hash__


class _Key(str):
    def __eq__(self, other: object) -> bool:
        _Counted.calls += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


STORM = 400


async def _storm(keys: list[str]) -> int:
    """Equality tests made as STORM waits, the last first, are cancelled."""
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop, 1)
    slots.loop = _Loop(loop)  # type: ignore[assignment]
    holder = _Key("holder")
    assert slots.take(holder)
    end = loop.time() + 3600
    waits = [asyncio.ensure_future(slots.wait(key, end)) for key in keys]
    await _idle()
    _Counted.calls = 0
    for wait in reversed(waits):
        wait.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    counted = _Counted.calls
    slots.give(holder)
    assert slots._free == 1 and not slots._queues and not slots._turns
    return counted


class _Loop:
    """The running loop, its futures counting their equality tests."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def create_future(self) -> asyncio.Future[None]:
        return _Turn(loop=self._loop)


async def test_a_storm_of_one_keys_waits_cancelled_costs_no_comparison_per_pair() -> None:
    key = _Key("https://ca.test/acct/storm")
    assert await _storm([key] * STORM) <= STORM


async def test_a_storm_of_many_keys_waits_cancelled_costs_no_comparison_per_pair() -> None:
    keys = [_Key(f"https://ca.test/acct/{n}") for n in range(STORM)]
    assert await _storm(keys) <= STORM

"""Slots: the CAA checker's bound on its lookups in flight (`validation.slots`)."""

from __future__ import annotations

import asyncio

import pytest

from acmekit.server.validation.slots import Slots

A, B, C = "https://ca.test/acct/a", "https://ca.test/acct/b", "https://ca.test/acct/c"


async def test_a_slot_given_back_goes_to_the_first_waiting() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop)
    assert slots.take(A)
    assert not slots.take(A)
    order: list[str] = []

    async def waiter(name: str) -> None:
        await slots.wait(A, loop.time() + 60)
        order.append(name)
        slots.give(A)

    waiting = [asyncio.ensure_future(waiter(n)) for n in ("first", "second")]
    await asyncio.sleep(0)
    assert not slots.take(A)  # others wait: no jumping the queue
    slots.give(A)
    await asyncio.gather(*waiting)
    assert order == ["first", "second"]
    assert slots.take(A)


async def test_a_wait_past_its_end_is_a_timeout_and_leaves_the_queue() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop)
    assert slots.take(A)
    with pytest.raises(TimeoutError):
        await slots.wait(A, loop.time())
    slots.give(A)
    assert slots.take(A)  # nobody is left waiting to hold it


async def test_a_wait_ended_by_a_timeout_as_its_slot_came_passes_the_slot_on() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop)
    assert slots.take(A)
    late = asyncio.ensure_future(slots.wait(A, loop.time() + 60))
    await asyncio.sleep(0)
    slots.give(A)  # handed to `late`, which is cancelled before it runs again
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert slots.take(A)


async def test_a_give_passes_over_a_wait_already_cancelled() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop)
    assert slots.take(A)
    gone = asyncio.ensure_future(slots.wait(A, loop.time() + 60))
    await asyncio.sleep(0)
    gone.cancel()
    slots.give(A)  # before `gone` ran again: its turn was cancelled, not handed a slot
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert slots.take(A)


async def test_a_key_holds_at_most_its_share_and_others_take_the_rest() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(4, loop, per_key=2)
    assert slots.take(A) and slots.take(A)
    assert not slots.take(A)
    held = asyncio.ensure_future(slots.wait(A, loop.time() + 60))
    await asyncio.sleep(0)
    # A waits at its share: that does not stop B taking the free slots.
    assert slots.take(B) and slots.take(B)
    assert not slots.take(C)
    slots.give(B)  # A holds its share still: the slot goes to C, not to A's wait
    assert not held.done()
    assert slots.take(C)
    slots.give(A)  # now A is under its share: its wait has the slot
    await held
    assert not slots.take(A)


async def test_keys_waiting_take_turns() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop)
    assert slots.take(C)
    order: list[str] = []

    async def waiter(key: str, n: int) -> None:
        await slots.wait(key, loop.time() + 60)
        order.append(f"{key[-1]}{n}")
        slots.give(key)

    # A's three waits queue before B's one: B is served after A's first, not its last.
    waiting = [asyncio.ensure_future(waiter(A, n)) for n in range(3)]
    waiting.append(asyncio.ensure_future(waiter(B, 0)))
    await asyncio.sleep(0)
    slots.give(C)
    await asyncio.gather(*waiting)
    assert order == ["a0", "b0", "a1", "a2"]

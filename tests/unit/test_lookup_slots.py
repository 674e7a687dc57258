"""Slots: the CAA checker's bound on its lookups in flight (`validation.slots`)."""

from __future__ import annotations

import asyncio

import pytest

from acmekit.server.validation.slots import Slots


async def test_a_slot_given_back_goes_to_the_first_waiting() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop)
    assert slots.take()
    assert not slots.take()
    order: list[str] = []

    async def waiter(name: str) -> None:
        await slots.wait(loop.time() + 60)
        order.append(name)
        slots.give()

    waiting = [asyncio.ensure_future(waiter(n)) for n in ("first", "second")]
    await asyncio.sleep(0)
    assert not slots.take()  # others wait: no jumping the queue
    slots.give()
    await asyncio.gather(*waiting)
    assert order == ["first", "second"]
    assert slots.take()


async def test_a_wait_past_its_end_is_a_timeout_and_leaves_the_queue() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop)
    assert slots.take()
    with pytest.raises(TimeoutError):
        await slots.wait(loop.time())
    slots.give()
    assert slots.take()  # nobody is left waiting to hold it


async def test_a_wait_ended_by_a_timeout_as_its_slot_came_passes_the_slot_on() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop)
    assert slots.take()
    late = asyncio.ensure_future(slots.wait(loop.time() + 60))
    await asyncio.sleep(0)
    slots.give()  # handed to `late`, which is cancelled before it runs again
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert slots.take()


async def test_a_give_passes_over_a_wait_already_cancelled() -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(1, loop)
    assert slots.take()
    gone = asyncio.ensure_future(slots.wait(loop.time() + 60))
    await asyncio.sleep(0)
    gone.cancel()
    slots.give()  # before `gone` ran again: its turn was cancelled, not handed a slot
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert slots.take()

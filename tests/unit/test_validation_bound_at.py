"""`resolve.bound_at` behaves as `asyncio.timeout_at` does, case by case."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from acmekit.server.validation.resolve import bound_at

Bound = Callable[[float], AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def _bound_at_with(when: float) -> AsyncIterator[None]:
    """`bound_at` entered with a plain `with`, as the validations enter it."""
    with bound_at(when):
        yield


@contextlib.asynccontextmanager
async def _bound_at_with_loop(when: float) -> AsyncIterator[None]:
    """`bound_at` given the loop, as the Validator gives it."""
    with bound_at(when, asyncio.get_running_loop()):
        yield


BOUNDS: list[Bound] = [bound_at, _bound_at_with, _bound_at_with_loop, asyncio.timeout_at]


def _in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


@pytest.mark.parametrize("bound", BOUNDS)
async def test_the_time_passing_is_timeout_error(bound: Bound) -> None:
    with pytest.raises(TimeoutError):
        async with bound(_in(0.01)):
            await asyncio.sleep(5)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # not cancelled again later


@pytest.mark.parametrize("bound", BOUNDS)
async def test_a_past_deadline_ends_at_the_first_wait(bound: Bound) -> None:
    reached = []
    with pytest.raises(TimeoutError):
        async with bound(_in(-1)):
            reached.append(1)
            await asyncio.sleep(5)
    assert reached == [1]


@pytest.mark.parametrize("bound", BOUNDS)
async def test_in_time_nothing_happens(bound: Bound) -> None:
    async with bound(_in(0.05)):
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # the timer was cancelled: no cancellation arrives


@pytest.mark.parametrize("bound", BOUNDS)
async def test_a_cancellation_from_outside_stays_one(bound: Bound) -> None:
    entered = asyncio.Event()

    async def body() -> None:
        async with bound(_in(5)):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("bound", BOUNDS)
async def test_cancelled_from_elsewhere_as_the_time_passes(bound: Bound) -> None:
    """Both at once: the other cancellation is not taken for the bound's own."""
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(asyncio.CancelledError):
        async with bound(_in(-1)):  # expires at the next turn of the loop
            task.cancel()
            await asyncio.sleep(5)
    assert task.uncancel() == 0


@pytest.mark.parametrize("bound", BOUNDS)
async def test_the_earlier_of_two_nested_bounds_is_the_one_raised(bound: Bound) -> None:
    seen = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout_at(_in(0.02)):
            try:
                async with bound(_in(5)):
                    await asyncio.sleep(5)
            except TimeoutError:
                seen.append("inner")  # the outer one's expiry is not the inner's
                raise
    assert seen == []
    try:
        async with bound(_in(5)):
            async with asyncio.timeout_at(_in(0.02)):
                await asyncio.sleep(5)
    except TimeoutError:
        seen.append("inner")
    assert seen == ["inner"]

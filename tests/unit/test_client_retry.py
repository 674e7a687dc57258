"""Retry-After parsing, the backoff sequence, and polling on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from acmekit.client.retry import Backoff, DeadlineExceeded, parse_retry_after, poll

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeClock:
    """Time that moves only when someone sleeps; records every sleep."""

    def __init__(self, start: datetime = NOW) -> None:
        self.current = start
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Thu, 02 Jan 2025 03:04:35 GMT", 30.0),
        ("Thu, 02 Jan 2025 03:00:00 GMT", 0.0),  # in the past: no wait
        ("Thursday, 02-Jan-25 03:05:05 GMT", 60.0),  # RFC 850 form
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_backoff_starts_short_doubles_and_caps() -> None:
    steps = Backoff(initial=0.25, factor=2.0, cap=5.0).intervals()
    assert [next(steps) for _ in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


async def test_poll_uses_backoff_until_done() -> None:
    clock = FakeClock()
    answers = iter(["pending"] * 4 + ["valid"])

    async def fetch() -> tuple[str, float | None]:
        return next(answers), None

    result = await poll(fetch, lambda s: s == "valid", clock=clock, max_wait=60)
    assert result == "valid"
    assert clock.sleeps == [0.1, 0.2, 0.4, 0.8]


async def test_poll_prefers_retry_after_but_never_below_first_step() -> None:
    clock = FakeClock()
    answers = iter([("processing", 3.0), ("processing", 0.0), ("valid", None)])

    async def fetch() -> tuple[str, float | None]:
        return next(answers)

    assert await poll(fetch, lambda s: s == "valid", clock=clock, max_wait=60) == "valid"
    assert clock.sleeps == [3.0, 0.1]


async def test_poll_gives_up_at_the_deadline_and_never_sleeps_past_it() -> None:
    clock = FakeClock()

    async def fetch() -> tuple[str, float | None]:
        return "pending", 50.0

    with pytest.raises(DeadlineExceeded, match="order X"):
        await poll(fetch, lambda s: False, clock=clock, max_wait=120, what="order X")
    assert clock.sleeps == [50.0, 50.0, 20.0]
    assert clock.now() - NOW == timedelta(seconds=120)


async def test_poll_wait_first_waits_one_step_before_the_first_fetch() -> None:
    clock = FakeClock()
    fetched_at: list[datetime] = []
    answers = iter(["processing", "valid"])

    async def fetch() -> tuple[str, float | None]:
        fetched_at.append(clock.now())
        return next(answers), None

    result = await poll(fetch, lambda s: s == "valid", clock=clock, max_wait=60, wait_first=True)
    assert result == "valid"
    # The first step before the first fetch, then the backoff goes on from the second.
    assert clock.sleeps == [0.1, 0.2]
    assert fetched_at == [NOW + timedelta(seconds=0.1), NOW + timedelta(seconds=0.3)]

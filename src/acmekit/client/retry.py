"""How long to wait: Retry-After parsing (RFC 9110 §10.2.3, RFC 8555 §8.2) and backoff.

Polling starts short and grows (0.25 s doubling up to a cap), never a fixed 1 s sleep;
a server's Retry-After wins over the backoff, and an overall deadline bounds both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TypeVar

from acmekit.client.errors import ClientError
from acmekit.clock import Clock

T = TypeVar("T")


class DeadlineExceeded(ClientError, TimeoutError):
    """Polling ran past its deadline while the resource was still in progress."""


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value: delay-seconds or an HTTP-date.

    Unparseable values give None (use the backoff instead); dates in the past give 0.
    """
    if value is None:
        return None
    text = value.strip()
    # RFC 9110 §10.2.3: delay-seconds is 1*DIGIT, ASCII; str.isdigit also takes '²', on
    # which int() raises, and '١٢٠', which int() reads as 120: ASCII is checked first.
    if not text.isascii():
        # An HTTP-date is ASCII too (RFC 9110 §5.6.7), but the email parser reads each of
        # its numbers with int(), which takes any script's digits.
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class Backoff:
    """Intervals `initial`, `initial*factor`, ... capped at `cap` seconds."""

    # A CA validates and signs in tens of milliseconds; start there, back off fast.
    initial: float = 0.1
    factor: float = 2.0
    cap: float = 5.0

    def intervals(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield min(delay, self.cap)
            delay = min(delay * self.factor, self.cap)


DEFAULT_BACKOFF = Backoff()


async def poll(
    fetch: Callable[[], Awaitable[tuple[T, float | None]]],
    done: Callable[[T], bool],
    *,
    clock: Clock,
    max_wait: float,
    backoff: Backoff = DEFAULT_BACKOFF,
    what: str = "resource",
    wait_first: bool = False,
) -> T:
    """Call `fetch` until `done(result)`; between calls wait Retry-After or the backoff.

    `fetch` returns the result and the server's Retry-After in seconds (or None). A
    Retry-After shorter than the first backoff step is raised to it, so a server saying
    "0" cannot spin us; every wait is cut to what remains of `max_wait` seconds.
    With `wait_first`, the first backoff step is waited before the first fetch: right
    after the request that started the work (a challenge answered), the resource is
    still in progress, and asking at once only costs a signed request on both sides.
    """
    deadline = clock.now() + timedelta(seconds=max_wait)
    steps = backoff.intervals()
    if wait_first:
        await clock.sleep(min(next(steps), max_wait))
    while True:
        result, retry_after = await fetch()
        if done(result):
            return result
        remaining = (deadline - clock.now()).total_seconds()
        if remaining <= 0:
            raise DeadlineExceeded(f"{what} still not done after {max_wait:g} s")
        step = next(steps)
        wait = step if retry_after is None else max(retry_after, backoff.initial)
        await clock.sleep(min(wait, remaining))

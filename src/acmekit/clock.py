"""Time as a seam: the client and the fleet read the clock through `Clock`; the server,
which never sleeps on it, is handed a `Clock`'s `now`.

A test passes a clock whose `sleep` only moves `now` forward, and so lives through
hours of polling, or 90 days of renewals, in no time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


# The current time in UTC, read without a Python frame of ours: the server reads it about
# thirty times a certificate (nonces, orders, validations, issuance), 100 ns less each.
utc_now: Callable[[], datetime] = partial(datetime.now, UTC)


class SystemClock:
    """The real clock: wall time for `now`, the event loop for `sleep`."""

    now = staticmethod(utc_now)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

"""When a certificate is due for renewal: a pure policy, the clock passed in.

Without renewal information a certificate is due once a third of its lifetime is left
(half of it for lifetimes under ten days, so a six-day certificate renews at three
days), which for a 90-day certificate is certbot's 30 days. A lineage may fix the
margin itself (certbot's `renew_before_expiry = 30 days`).

With ACME Renewal Information (RFC 9773 §4.2) the server suggests a window: the
client picks a time uniformly at random inside it (the `rand` argument, 0..1, is the
caller's randomness), renews once that time has passed, and otherwise checks again
when the time comes or after the server's Retry-After, whichever is sooner. A window
entirely in the past means renew now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

SHORT_LIFETIME = timedelta(days=10)
DEFAULT_ARI_RETRY = timedelta(hours=6)


@dataclass(frozen=True)
class AriWindow:
    """RFC 9773 `suggestedWindow`: renew at some time in [start, end)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class RenewalDecision:
    due: bool
    renew_at: datetime  # when the certificate becomes (or became) due
    next_check: datetime  # when to look again if not renewed now
    reason: str


def renewal_time(
    not_before: datetime, not_after: datetime, renew_before_expiry: timedelta | None = None
) -> datetime:
    """The moment a certificate becomes due without renewal information."""
    if renew_before_expiry is not None:
        return not_after - renew_before_expiry
    lifetime = not_after - not_before
    fraction = 2 if lifetime < SHORT_LIFETIME else 3
    return not_after - lifetime / fraction


def ari_renewal_time(window: AriWindow, rand: float) -> datetime:
    """RFC 9773 §4.2: a uniformly random time within the suggested window."""
    if window.end <= window.start:
        return window.start
    return window.start + (window.end - window.start) * min(max(rand, 0.0), 1.0)


def decide(
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    *,
    ari: AriWindow | None = None,
    ari_retry_after: timedelta | None = None,
    rand: float = 0.5,
    renew_before_expiry: timedelta | None = None,
) -> RenewalDecision:
    """Is the certificate due at `now`, and when should we look again?"""
    if ari is not None:
        return _decide_ari(ari, now, ari_retry_after or DEFAULT_ARI_RETRY, rand)
    at = renewal_time(not_before, not_after, renew_before_expiry)
    if now >= at:
        why = "expired" if now >= not_after else "in the renewal period"
        return RenewalDecision(True, at, now, why)
    return RenewalDecision(False, at, at, f"due on {at:%Y-%m-%d %H:%M} UTC")


def _decide_ari(
    window: AriWindow, now: datetime, retry_after: timedelta, rand: float
) -> RenewalDecision:
    at = ari_renewal_time(window, rand)
    if now >= at or now >= window.end:
        return RenewalDecision(True, at, now, "renewal window reached (ARI)")
    return RenewalDecision(
        False, at, min(at, now + retry_after), f"ARI suggests {at:%Y-%m-%d %H:%M} UTC"
    )


_INTERVAL = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day|week)s?\s*$", re.IGNORECASE)


def parse_interval(text: str) -> timedelta:
    """certbot's `renew_before_expiry` values: "30 days", "1 week", "12 hours"."""
    found = _INTERVAL.match(text)
    if found is None:
        raise ValueError(f"cannot read interval {text!r}")
    unit = found.group(2).lower() + "s"
    return timedelta(**{unit: int(found.group(1))})

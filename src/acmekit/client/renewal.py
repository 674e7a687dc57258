"""When a certificate is due for renewal: the one policy of the client and the fleet.

A pure function of the certificate's dates, the CA's renewal information and a number
`rand` in [0, 1] that is the caller's randomness (certbot renew draws one; the fleet
fixes one per site, so every worker computes the same time).

Without renewal information a certificate is due once a third of its lifetime is left
(half of it for lifetimes under ten days, so a six-day certificate renews at three
days), which for a 90-day certificate is certbot's 30 days. A lineage may fix the
margin itself (certbot's `renew_before_expiry = 30 days`). The fleet spreads its sites
over a further stretch after that time; that spread is the fleet's, not this policy's.

With ACME Renewal Information (RFC 9773 §4.2) the server's suggested window wins over
the default lifetime rule, whether it lies earlier or later: the time is
`start + (end - start) * rand`, so a window entirely in the past means renew now. A
window reaching past expiry is cut at `not_after` minus a margin (a day, or a tenth of
the lifetime if that is less), so that no window can let a certificate lapse. A client
not yet due checks again when the time comes or after the server's Retry-After,
whichever is sooner. A margin the lineage fixes itself (`renew_before_expiry`) still
counts beside a window: the certificate is due when either says so, as certbot's
`should_autorenew` decides, so that a margin an operator chose (say, 60 days, to leave
time for a manual deploy) is not silently pushed back by the CA's window.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

SHORT_LIFETIME = timedelta(days=10)
EXPIRY_MARGIN = timedelta(days=1)  # no ARI window delays renewal past not_after - this
EXPIRY_MARGIN_FRACTION = 1 / 10  # ... or past this much of the lifetime before it, if less
_MICROSECOND = timedelta(microseconds=1)
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
    by_ari: bool = False  # the CA's window (RFC 9773) set `renew_at`, not the lifetime


def _part(span: timedelta, fraction: float) -> timedelta:
    """`span * fraction` truncated to whole microseconds, as the fleet stores times."""
    return timedelta(microseconds=int(span // _MICROSECOND * fraction))


def lifetime_renewal_time(
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
    return window.start + _part(window.end - window.start, min(max(rand, 0.0), 1.0))


def latest_renewal(not_before: datetime, not_after: datetime) -> datetime:
    """The latest time any window may set: `not_after` minus the safety margin."""
    lifetime = max(not_after - not_before, timedelta(0))
    return not_after - min(EXPIRY_MARGIN, _part(lifetime, EXPIRY_MARGIN_FRACTION))


def renewal_time(
    not_before: datetime,
    not_after: datetime,
    *,
    ari: AriWindow | None = None,
    rand: float = 0.5,
    renew_before_expiry: timedelta | None = None,
) -> datetime:
    """When the certificate becomes (or became) due: in the CA's window if it offers one,
    else when a third of its lifetime is left; a `renew_before_expiry` margin counts in
    either case, whichever of the two comes first."""
    if ari is None:
        return lifetime_renewal_time(not_before, not_after, renew_before_expiry)
    at = min(ari_renewal_time(ari, rand), latest_renewal(not_before, not_after))
    if renew_before_expiry is not None:
        at = min(at, not_after - renew_before_expiry)
    return at


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
    if ari is None:
        at = lifetime_renewal_time(not_before, not_after, renew_before_expiry)
        return _decide_lifetime(at, now, not_after)
    retry_after = ari_retry_after or DEFAULT_ARI_RETRY
    at = renewal_time(not_before, not_after, ari=ari, rand=rand)
    if renew_before_expiry is None or at <= not_after - renew_before_expiry:
        return _decide_ari(at, now, retry_after)
    # The lineage's own margin comes before the window: due by it, as certbot decides;
    # until then the window is still looked at again, for the CA may move it earlier.
    decision = _decide_lifetime(not_after - renew_before_expiry, now, not_after)
    if decision.due:
        return decision
    return dataclasses.replace(decision, next_check=min(decision.renew_at, now + retry_after))


def _decide_lifetime(at: datetime, now: datetime, not_after: datetime) -> RenewalDecision:
    if now >= at:
        why = "expired" if now >= not_after else "in the renewal period"
        return RenewalDecision(True, at, now, why)
    return RenewalDecision(False, at, at, f"due on {at:%Y-%m-%d %H:%M} UTC")


def _decide_ari(at: datetime, now: datetime, retry_after: timedelta) -> RenewalDecision:
    if now >= at:
        return RenewalDecision(True, at, now, "renewal window reached (ARI)", by_ari=True)
    return RenewalDecision(
        False,
        at,
        min(at, now + retry_after),
        f"ARI suggests {at:%Y-%m-%d %H:%M} UTC",
        by_ari=True,
    )


# certbot's units (parsedatetime's English ones), each with its plural and short forms.
_UNITS = {
    "seconds": ("second", "seconds", "sec", "secs", "s"),
    "minutes": ("minute", "minutes", "min", "mins", "m"),
    "hours": ("hour", "hours", "hr", "hrs", "h"),
    "days": ("day", "days", "dy", "d"),
    "weeks": ("week", "weeks", "wk", "wks", "w"),
    "months": ("month", "months", "mth", "mths", "mo", "mos"),
    "years": ("year", "years", "yr", "yrs", "y"),
}
_UNIT_OF = {form: unit for unit, forms in _UNITS.items() for form in forms}
# ASCII: in Unicode mode \d takes Arabic-Indic digits (int() reads them) and IGNORECASE
# takes the long s (U+017F) for 's' and the Kelvin sign (U+212A) for 'k': "1 wee\u212a"
# passed as "1 week", and "1 \u017fecond" matched and then named no unit.
_PART = re.compile(r"\s*([0-9]+)\s*([a-z]+)\s*", re.IGNORECASE | re.ASCII)
_BARE_DAYS = re.compile(r"\s*[0-9]+\s*", re.ASCII)
# Longer than any certificate lives: refused rather than let `not_after - margin`
# overflow and stop a whole `renew` (a typo of a few digits is enough).
MAX_INTERVAL = timedelta(days=100 * 366)
_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}


def parse_interval(text: str, at: datetime | None = None) -> timedelta:
    """certbot's `renew_before_expiry` values, as its `add_time_interval` reads them:
    one or more "NUMBER UNIT" ("30 days", "1 month", "30 days 12 hours", "30d"), or a
    bare number of days ("30"). Months and years are calendar ones counted from `at`
    (a month from 31 January is 28 or 29 days: the day is cut to the month's last),
    so `not_after - parse_interval(text, now) <= now` is certbot's own test
    `not_after < now + interval`; without `at` they are refused."""
    if _BARE_DAYS.fullmatch(text):
        text += " days"
    seconds, months = 0, 0
    pos = 0
    while pos < len(text) or pos == 0:
        found = _PART.match(text, pos)
        unit = _UNIT_OF.get(found.group(2).lower()) if found else None
        if found is None or unit is None:
            raise ValueError(f"cannot read interval {text!r}")
        count = int(found.group(1))
        if unit in _SECONDS:
            seconds += count * _SECONDS[unit]
        else:
            months += count * (12 if unit == "years" else 1)
        pos = found.end()
    if seconds > MAX_INTERVAL.total_seconds() or months > 100 * 12:
        raise ValueError(f"interval {text!r} is longer than {MAX_INTERVAL.days} days")
    span = timedelta(seconds=seconds)
    if months == 0:
        return span
    if at is None:
        raise ValueError(f"interval {text!r} counts months: it needs a date to count from")
    return _add_months(at, months) - at + span


def _add_months(at: datetime, months: int) -> datetime:
    index = at.month - 1 + months
    year, month = at.year + index // 12, index % 12 + 1
    return at.replace(year=year, month=month, day=min(at.day, _month_days(year, month)))


def _month_days(year: int, month: int) -> int:
    following = datetime(year + month // 12, month % 12 + 1, 1)
    return (following - datetime(year, month, 1)).days

"""The Baseline Requirements' schedule of shrinking lifetimes (CA/Browser Forum ballot SC-081).

Ballot SC-081 put two tables into the TLS Baseline Requirements, each a step down on a
fixed date:

| from        | max validity (§6.3.2) | domain / IP validation reuse (§4.2.1) |
|-------------|-----------------------|---------------------------------------|
| (before)    | 398 days              | 398 days                              |
| 2026-03-15  | 200 days              | 200 days                              |
| 2027-03-15  | 100 days              | 100 days                              |
| 2029-03-15  | 47 days               | 10 days                               |

`check_profiles` refuses, at start, a configuration whose profiles would break the table
on the date the injected clock gives: a certificate lifetime over the maximum validity,
or an authorization that could be reused (its `valid_authz_lifetime`, and its
`authz_reuse` period) for longer than the reuse period. A validity period is counted as
the BR count it (§1.6.1 "Validity Period": notBefore through notAfter inclusive), so a
lifetime of exactly N days is N days and one second, which is over a limit of N days.

A CA that keeps running across a step is caught at issuance by the linter (lint.py),
which applies the same table to each certificate's own notBefore.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

# §1.6.1: the Validity Period includes both its first and its last second.
INCLUSIVE = timedelta(seconds=1)


@dataclass(frozen=True)
class Step:
    """From `since` (00:00 UTC) on, the two maxima in force."""

    since: date
    max_validity: timedelta
    max_reuse: timedelta


# Ballot SC-081; BR §6.3.2 (validity) and §4.2.1 (reuse of domain and IP validation).
SC081 = (
    Step(date.min, timedelta(days=398), timedelta(days=398)),
    Step(date(2026, 3, 15), timedelta(days=200), timedelta(days=200)),
    Step(date(2027, 3, 15), timedelta(days=100), timedelta(days=100)),
    Step(date(2029, 3, 15), timedelta(days=47), timedelta(days=10)),
)


def step_at(now: datetime) -> Step:
    """The row of the table in force at `now` (timezone-aware)."""
    today = now.astimezone(UTC).date()
    return [s for s in SC081 if s.since <= today][-1]


class ProfileLifetimes(Protocol):
    """What the schedule reads of a profile (config.Profile)."""

    @property
    def certificate_lifetime(self) -> timedelta: ...
    @property
    def valid_authz_lifetime(self) -> timedelta: ...
    @property
    def authz_reuse(self) -> timedelta | None: ...


def _days(span: timedelta) -> str:
    """`span` in the largest unit that states it exactly: '45 days', '7 hours', '90 s'."""
    seconds = int(span.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _since(step: Step) -> str:
    return "before 2026-03-15" if step.since == date.min else f"from {step.since.isoformat()}"


def violations(name: str, profile: ProfileLifetimes, now: datetime) -> list[str]:
    """One line per setting of profile `name` that the table forbids at `now`."""
    step = step_at(now)
    found: list[str] = []
    validity = profile.certificate_lifetime + INCLUSIVE
    if validity > step.max_validity:
        found.append(
            f"profile {name!r}: certificate_lifetime {_days(profile.certificate_lifetime)} "
            f"(counted inclusively) exceeds the {_days(step.max_validity)} maximum validity "
            f"that the Baseline Requirements §6.3.2 allow {_since(step)}"
        )
    reuse = {"valid_authz_lifetime": profile.valid_authz_lifetime}
    if profile.authz_reuse is not None:
        reuse["authz_reuse"] = profile.authz_reuse
    for setting, span in reuse.items():
        if span > step.max_reuse:
            found.append(
                f"profile {name!r}: {setting} {_days(span)} exceeds the {_days(step.max_reuse)} "
                f"reuse of domain validation that the Baseline Requirements §4.2.1 allow "
                f"{_since(step)}"
            )
    return found


def check_profiles(profiles: Mapping[str, ProfileLifetimes], now: datetime) -> None:
    """ValueError (one line: the first offence) if a profile breaks the table at `now`."""
    for name, profile in profiles.items():
        found = violations(name, profile, now)
        if found:
            raise ValueError(found[0])

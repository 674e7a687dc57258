"""Rate limits as GCRA (the generic cell rate algorithm), Boulder's way: one number per bucket.

A limit of `count` per `period` lets one request through every `period / count` seconds
(the emission interval T) with a burst of up to `count` at once. A bucket's state is its
"theoretical arrival time" (TAT): the time at which it would be full again if nothing
more were taken. A take at `now` moves the TAT to `max(TAT, now) + T` and is allowed if
that is no more than `count * T` (the burst tolerance) ahead of `now`; otherwise it is
refused with `rateLimited` (RFC 8555 §6.7, HTTP 429) and `Retry-After` set to the seconds
until it would be allowed. This is the token bucket of earlier versions with the tokens
left implied: `(now + count * T - TAT) / T`, at most `count`.

The math here is pure, in integer microseconds; `RateLimiter` keeps one TAT per bucket
key in the database, moved by one conditional upsert whose returned row says granted or
refused, so every server process sharing the database shares the buckets with no
read-then-write race and no retry loop (server/repos/buckets.py). The rates stay in the
configuration: a changed `count` applies to a bucket from its next take.

Limits, named and sized as Let's Encrypt names and sizes them (all configurable):

- new_accounts_per_ip: 10 per 3 hours, taken at newAccount (client IP from ASGI scope;
  an IPv6 client counted by its /64, `acmekit.webguard.client_key`).
- new_orders_per_account: 300 per 3 hours, taken at newOrder.
- certificates_per_domain: 50 per 7 days per registered domain (eTLD+1 by the Public
  Suffix List), checked at newOrder so a client learns early, taken at finalize (one
  atomic take: orders opened together cannot all pass a newOrder check), and given back
  when the issuance then fails (CT logs down, a lint refusal) or never starts.
- duplicate_certificates: 5 per 7 days per exact set of names; checked and taken likewise.
- failed_validations: 5 per hour per account and hostname; checked when a challenge is
  started, spent when a validation fails.

An order that replaces a certificate (RFC 9773 §5, `replaces`) is exempt from all of them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from acmekit.database import to_us
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import ProblemType, problem
from acmekit.server.config import Limit, RateLimits
from acmekit.server.repos.base import Ahead
from acmekit.settings import span

SECOND_US = 1_000_000

# ---------------------------------------------------------------------------------------
# GCRA (pure; times in integer microseconds since the epoch)


@dataclass(frozen=True)
class Rate:
    burst: int  # the most requests let through at once
    period_seconds: float  # time to refill from empty to full

    @classmethod
    def of(cls, limit: Limit, burst: int | None = None) -> Rate:
        return cls(limit.count if burst is None else burst, limit.period.total_seconds())

    @property
    def unlimited(self) -> bool:
        """A period of zero refills at once: nothing is ever refused."""
        return self.period_seconds <= 0

    @property
    def interval_us(self) -> int:
        """T, the emission interval: one request's worth of time (rounded up to a whole
        microsecond, so the rate is never above the configured one)."""
        if self.burst <= 0:
            raise ValueError("a limit of zero has no emission interval")
        return max(1, -(-round(self.period_seconds * SECOND_US) // self.burst))

    @property
    def tolerance_us(self) -> int:
        """How far ahead of now the TAT may run: the whole burst's worth."""
        return self.burst * self.interval_us


@dataclass(frozen=True)
class Decision:
    allowed: bool
    tat: int | None  # the bucket's TAT after the decision (unchanged when refused)
    retry_after: int  # whole seconds until it would be allowed; 0 when allowed


def tokens(tat: int | None, now: int, rate: Rate) -> float:
    """The requests that would be let through at `now`: what a token bucket holds."""
    if rate.unlimited or tat is None or tat <= now:
        return float(max(0, rate.burst))
    return max(0.0, (now + rate.tolerance_us - tat) / rate.interval_us)


def wait_seconds(tat: int | None, now: int, rate: Rate, cost: int = 1) -> int:
    """Whole seconds (rounded up) until `cost` requests would be let through; a limit of
    zero, or a cost above the burst, waits a whole period."""
    if rate.unlimited:
        return 0
    if rate.burst <= 0 or cost > rate.burst:
        return max(1, math.ceil(rate.period_seconds))
    start = now if tat is None else max(tat, now)
    late = start + cost * rate.interval_us - (now + rate.tolerance_us)
    return 0 if late <= 0 else max(1, -(-late // SECOND_US))


def take(tat: int | None, now: int, rate: Rate, cost: int = 1) -> Decision:
    """Let `cost` requests through if the burst allows, moving the TAT; otherwise leave it
    as it is and say how long to wait. (`check` is the same question without the write.)"""
    wait = wait_seconds(tat, now, rate, cost)
    if wait or rate.unlimited:
        return Decision(wait == 0, tat, wait)
    start = now if tat is None else max(tat, now)
    return Decision(True, start + cost * rate.interval_us, 0)


def spend(tat: int | None, now: int, rate: Rate, cost: int = 1) -> int | None:
    """Count `cost` requests already served, allowed or not: the TAT moves on but never
    past a full burst ahead (a token bucket never below zero), so a bucket overspent by
    work already done refills within one period."""
    if rate.unlimited or rate.burst <= 0:
        return tat
    start = now if tat is None else max(tat, now)
    return min(start + cost * rate.interval_us, now + rate.tolerance_us)


# ---------------------------------------------------------------------------------------
# What a limit counts


def name_set_key(identifiers: Iterable[Identifier]) -> str:
    """One short key for an exact set of names (case and order do not matter)."""
    names = sorted({f"{i.type}:{i.value.lower()}" for i in identifiers})
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:32]


def ip_key(ident: Identifier) -> str:
    return str(ident.value) if ident.type == IdentifierType.IP else ident.value.lower()


# ---------------------------------------------------------------------------------------
# Buckets in the database


class LimitName(StrEnum):
    NEW_ACCOUNTS_PER_IP = "new_accounts_per_ip"
    NEW_ORDERS_PER_ACCOUNT = "new_orders_per_account"
    CERTIFICATES_PER_DOMAIN = "certificates_per_domain"
    DUPLICATE_CERTIFICATES = "duplicate_certificates"
    FAILED_VALIDATIONS = "failed_validations"


_WHAT = {
    LimitName.NEW_ACCOUNTS_PER_IP: "new accounts from this IP address",
    LimitName.NEW_ORDERS_PER_ACCOUNT: "new orders for this account",
    LimitName.CERTIFICATES_PER_DOMAIN: "certificates for this registered domain",
    LimitName.DUPLICATE_CERTIFICATES: "certificates for this exact set of names",
    LimitName.FAILED_VALIDATIONS: "failed validations for this account and hostname",
}


# `RateLimiter.check_all`'s buckets read ahead: the TATs found, the time read at.
CheckAhead = Ahead[tuple[dict[str, int], int]]
# `RateLimiter.check`'s bucket read ahead under a key the database made: the key, its
# TAT (None: no bucket), the time read at.
KeyedAhead = Ahead[tuple[str | None, int | None, int]]


class BucketStore(Protocol):
    """One TAT per bucket key (microseconds); `take`, `spend` and `refund` are each one
    atomic statement, so concurrent processes never admit more than the burst. A `now`
    of None is the database's clock, read inside the statement."""

    def read(self, key: str, now: int | None, within: Any = None) -> tuple[int | None, int]: ...

    def reads(self, keys: Sequence[str], now: int | None) -> tuple[dict[str, int], int]: ...

    def reads_ahead(
        self, keys: Sequence[str], now: int | None
    ) -> Ahead[tuple[dict[str, int], int]]: ...

    def take(
        self, key: str, now: int | None, step: int, tolerance: int, within: Any = None
    ) -> bool: ...

    def take_with_ahead(
        self, key: str, now: int | None, step: int, tolerance: int, ahead: Sequence[Ahead[Any]]
    ) -> bool: ...

    def spend(self, key: str, now: int | None, step: int, tolerance: int) -> None: ...

    def refund(self, key: str, now: int | None, step: int) -> None: ...

    def read_of_challenge_ahead(
        self, prefix: str, challenge_id: str, now: int | None
    ) -> KeyedAhead: ...

    def takes_then(
        self,
        takes: Sequence[tuple[str, int | None, int, int]],
        then: tuple[str, Sequence[Any]],
        within: Any,
    ) -> tuple[list[bool], list[Any]]: ...


@dataclass(frozen=True)
class Subject:
    """What a bucket counts (`key`) and the names an override may be given under."""

    key: str
    override_keys: Sequence[str] = ()


class RateLimiter:
    """`database_clock`: judge by the database's clock, not the `now` passed in, so that
    CA processes whose clocks disagree by D do not together admit about D / T more than
    the limit. The `now` passed in still rules when it is not the real clock (tests)."""

    def __init__(
        self, limits: RateLimits, store: BucketStore, database_clock: bool = False
    ) -> None:
        self.limits = limits
        self.store = store
        self.database_clock = database_clock

    def _at(self, now: datetime) -> int | None:
        return None if self.database_clock else to_us(now)

    @property
    def enabled(self) -> bool:
        return self.limits.enabled

    def _rate(self, name: LimitName, subject: Subject) -> Rate:
        limit: Limit = getattr(self.limits, name.value)
        for key in (subject.key, *subject.override_keys):
            if key in limit.overrides:
                return Rate.of(limit, limit.overrides[key])
        return Rate.of(limit)

    def _refuse(self, name: LimitName, rate: Rate, wait: int) -> None:
        # "5 per hour", not "5 per 1 hours"
        period = span(rate.period_seconds).removeprefix("1 ")
        detail = f"too many {_WHAT[name]} ({name}: {rate.burst} per {period}); "
        detail += f"retry after {wait} seconds"
        raise problem(ProblemType.RATE_LIMITED, detail, retry_after=wait)

    def check(
        self, name: LimitName, subject: Subject, now: datetime, ahead: KeyedAhead | None = None
    ) -> None:
        """Refuse (rateLimited) if a take would be refused now; take nothing. `ahead`: its
        bucket read with the request's account (`check_of_challenge_ahead`), taken only
        if it was read under this bucket's key; else read now."""
        if ahead is not None and self.limits.enabled:
            rated, keyed = self._checked([(name, subject)])
            key, tat, at = ahead.result()
            if keyed and keyed[0] == key:
                self._judge(rated, {} if tat is None else {key: tat}, self._judged_at(at, now))
                return
        self.check_all([(name, subject)], now)

    def check_of_challenge_ahead(
        self, name: LimitName, challenge_id: str, now: datetime
    ) -> KeyedAhead | None:
        """`check`'s read of a limit counted per account and host, for the authorization
        of challenge `challenge_id`, to send ahead (`Ahead`); None with the limits off,
        or if `check` reads no bucket of this limit whatever its subject (`_reads_none`)."""
        if not self.limits.enabled or self._reads_none(name):
            return None
        return self.store.read_of_challenge_ahead(f"{name}:", challenge_id, self._at(now))

    def _reads_none(self, name: LimitName) -> bool:
        """Whether `check` of this limit reads no bucket under any subject: a period of
        zero never refuses (an override keeps the period), and a count of zero, with no
        override above it, refuses without a read (`_checked`)."""
        limit: Limit = getattr(self.limits, name.value)
        if limit.period.total_seconds() <= 0:
            return True
        return limit.count <= 0 and all(count <= 0 for count in limit.overrides.values())

    def take(
        self, name: LimitName, subject: Subject, now: datetime, ahead: Sequence[Ahead[Any]] = ()
    ) -> None:
        """Let one request through or refuse it (rateLimited with Retry-After), in a
        statement of its own. `ahead`: the caller's reads, sent in the take's round trip
        on PostgreSQL (`Ahead`; left unread without a take's statement: none to make, or
        refused before one), for the caller to take after it."""
        for key, _, rate in self._takes([(name, subject)]):
            self._take_one(key, name, rate, now, None, ahead)

    def _checked(
        self, pairs: Sequence[tuple[LimitName, Subject]]
    ) -> tuple[list[tuple[LimitName, Subject, Rate]], list[str]]:
        """`check_all`'s limits with their rates (the unlimited left out), and the keys
        of the buckets it reads."""
        rated = [(name, subject, self._rate(name, subject)) for name, subject in pairs]
        rated = [r for r in rated if not r[2].unlimited]
        return rated, [f"{name}:{subject.key}" for name, subject, rate in rated if rate.burst > 0]

    def check_ahead(
        self, pairs: Sequence[tuple[LimitName, Subject]], now: datetime
    ) -> CheckAhead | None:
        """`check_all`'s read of the buckets, to send ahead (`Ahead`); None if it reads
        none. For `check_all(pairs, ..., ahead)`, with the same `pairs`."""
        keyed = self._checked(pairs)[1] if self.limits.enabled else None
        return self.store.reads_ahead(keyed, self._at(now)) if keyed else None

    def check_all(
        self,
        pairs: Sequence[tuple[LimitName, Subject]],
        now: datetime,
        ahead: CheckAhead | None = None,
    ) -> None:
        """`check` for each, the buckets read in one statement (or, `ahead`, read with
        the request's account: `check_ahead` of these `pairs`). The time judged by is
        `now`, or with the database's clock the time the buckets were read at."""
        if not self.limits.enabled:
            return
        rated, keyed = self._checked(pairs)
        found, at = self._tats(keyed, now, ahead)
        self._judge(rated, found, at)

    def _judge(
        self, rated: Sequence[tuple[LimitName, Subject, Rate]], found: dict[str, int], at: int
    ) -> None:
        """`check_all`'s refusal, if one of `rated` would refuse a take at `at`, its
        bucket's TAT in `found` (none: a full bucket)."""
        for name, subject, rate in rated:
            tat = None if rate.burst <= 0 else found.get(f"{name}:{subject.key}")
            wait = wait_seconds(tat, at, rate)
            if wait:
                self._refuse(name, rate, wait)

    def _tats(
        self, keyed: Sequence[str], now: datetime, ahead: CheckAhead | None
    ) -> tuple[dict[str, int], int]:
        if not keyed:
            return {}, to_us(now)
        if ahead is None:
            return self.store.reads(keyed, self._at(now))
        found, at = ahead.result()
        return found, self._judged_at(at, now)

    def _judged_at(self, read_at: int, now: datetime) -> int:
        """The time a bucket read ahead is judged at: the database's at the read when
        its clock rules, else the caller's `now` (the read's own was earlier)."""
        return read_at if self.database_clock else to_us(now)

    def take_all(
        self, pairs: Sequence[tuple[LimitName, Subject]], now: datetime, within: Any
    ) -> None:
        """`take` for each, inside the caller's transaction `within` (None: each in a
        statement of its own): a refusal raises, and the caller's rollback returns what
        the others took, so all are taken or none. Taken in key order, so that two
        transactions lock shared buckets in one order."""
        for key, name, rate in self._takes(pairs):
            self._take_one(key, name, rate, now, within)

    def _take_one(
        self,
        key: str,
        name: LimitName,
        rate: Rate,
        now: datetime,
        within: Any,
        ahead: Sequence[Ahead[Any]] = (),
    ) -> None:
        """One bucket's take (`take_all`'s), with the reads `ahead` in its round trip."""
        if rate.burst <= 0:
            self._refuse(name, rate, wait_seconds(None, to_us(now), rate))
        at, step, tolerance = self._at(now), rate.interval_us, rate.tolerance_us
        if ahead:
            granted = self.store.take_with_ahead(key, at, step, tolerance, ahead)
        else:
            granted = self.store.take(key, at, step, tolerance, within)
        if not granted:
            self._refused(key, name, rate, at, within)

    def take_all_then(
        self,
        pairs: Sequence[tuple[LimitName, Subject]],
        now: datetime,
        within: Any,
        then: tuple[str, Sequence[Any]],
    ) -> list[Any]:
        """`take_all`, with the caller's statement `then` sent after the takes in their
        round trip (PostgreSQL: before one Sync, in the caller's transaction `within`),
        its rows returned. The takes and `then` all run, then the takes are judged in
        key order as `take_all` judges them: a refusal raises, and the caller's
        rollback takes back the other takes and `then` with it."""
        takes = self._takes(pairs)
        at, sent = self._at(now), []
        for key, _, rate in takes:
            if rate.burst <= 0:
                break  # refused without a statement: no take after it was made
            sent.append((key, at, rate.interval_us, rate.tolerance_us))
        granted, rows = self.store.takes_then(sent, then, within)
        for i, (key, name, rate) in enumerate(takes):
            if rate.burst <= 0:
                self._refuse(name, rate, wait_seconds(None, to_us(now), rate))
            if not granted[i]:
                self._refused(key, name, rate, at, within)
        return rows

    def _takes(
        self, pairs: Sequence[tuple[LimitName, Subject]]
    ) -> list[tuple[str, LimitName, Rate]]:
        """The buckets `take_all` takes from, in key order, with their rates (none with
        the limits off, or for a limit that is unlimited)."""
        if not self.limits.enabled:
            return []
        rated = [(f"{n}:{s.key}", n, self._rate(n, s)) for n, s in pairs]
        return [r for r in sorted(rated, key=lambda r: r[0]) if not r[2].unlimited]

    def _refused(self, key: str, name: LimitName, rate: Rate, at: int | None, within: Any) -> None:
        """Refused by the take's statement itself; the TAT is read again only for
        Retry-After (a concurrent change can move that figure, never the decision)."""
        tat, read_at = self.store.read(key, at, within)
        self._refuse(name, rate, max(1, wait_seconds(tat, read_at, rate)))

    def spend(self, name: LimitName, subject: Subject, now: datetime) -> None:
        """Count a request already served (an issuance, a failed validation), even if the
        bucket is empty."""
        if not self.limits.enabled:
            return
        rate = self._rate(name, subject)
        if rate.unlimited or rate.burst <= 0:
            return
        key = f"{name}:{subject.key}"
        self.store.spend(key, self._at(now), rate.interval_us, rate.tolerance_us)

    def refund(self, name: LimitName, subject: Subject, now: datetime) -> None:
        """Give back one take whose work did not happen (an issuance that failed): the
        TAT moves back by one interval, never below now."""
        if not self.limits.enabled:
            return
        rate = self._rate(name, subject)
        if rate.unlimited or rate.burst <= 0:
            return
        self.store.refund(f"{name}:{subject.key}", self._at(now), rate.interval_us)

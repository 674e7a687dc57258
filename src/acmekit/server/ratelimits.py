"""Rate limits as token buckets that refill steadily (not fixed windows).

A limit of `count` per `period` is a bucket holding at most `count` tokens that gains
`count / period` tokens a second. A request that needs a token takes one if the bucket
holds at least one; otherwise it is refused with `rateLimited` (RFC 8555 §6.7, HTTP 429)
and `Retry-After` set to the seconds until one token will be there. The math here is
pure (tokens, last update, now, rate); `RateLimiter` keeps each bucket as a database
row (key, tokens, updated, version) changed by compare-and-set, so every server process
sharing the database shares the counters.

Limits, named and sized as Let's Encrypt names and sizes them (all configurable):

- new_accounts_per_ip: 10 per 3 hours, taken at newAccount (client IP from ASGI scope).
- new_orders_per_account: 300 per 3 hours, taken at newOrder.
- certificates_per_domain: 50 per 7 days per registered domain (eTLD+1 by the Public
  Suffix List), checked at newOrder so a client learns early, spent at issuance.
- duplicate_certificates: 5 per 7 days per exact set of names; checked and spent likewise.
- failed_validations: 5 per hour per account and hostname; checked when a challenge is
  started, spent when a validation fails.

An order that replaces a certificate (RFC 9773 §5, `replaces`) is exempt from all of them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import ProblemType, problem
from acmekit.server.config import Limit, RateLimits

# ---------------------------------------------------------------------------------------
# Bucket math (pure)


@dataclass(frozen=True)
class Rate:
    burst: int  # the most tokens a bucket holds
    period_seconds: float  # time to refill from empty to full

    @classmethod
    def of(cls, limit: Limit, burst: int | None = None) -> Rate:
        return cls(limit.count if burst is None else burst, limit.period.total_seconds())

    @property
    def per_second(self) -> float:
        return self.burst / self.period_seconds if self.period_seconds > 0 else math.inf


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated: datetime


@dataclass(frozen=True)
class Decision:
    allowed: bool
    bucket: Bucket  # the state after the decision
    retry_after: int  # whole seconds until `cost` tokens are there; 0 when allowed


def available(bucket: Bucket | None, now: datetime, rate: Rate) -> float:
    """Tokens in the bucket at `now`: a missing bucket is full; a clock going back adds none."""
    if bucket is None:
        return float(rate.burst)
    elapsed = max(0.0, (now - bucket.updated).total_seconds())
    if rate.per_second == math.inf:
        return float(rate.burst)
    return min(float(rate.burst), max(0.0, bucket.tokens) + elapsed * rate.per_second)


def wait_seconds(tokens: float, rate: Rate, cost: int = 1) -> int:
    """Whole seconds until `tokens` grows to `cost` (rounded up); a bucket too small or
    with no refill waits a whole period."""
    if tokens >= cost:
        return 0
    if cost > rate.burst or rate.per_second <= 0:
        return max(1, math.ceil(rate.period_seconds))
    return max(1, math.ceil(round((cost - tokens) / rate.per_second, 6)))


def check(bucket: Bucket | None, now: datetime, rate: Rate, cost: int = 1) -> Decision:
    """Would `cost` tokens be granted now? Nothing is taken."""
    tokens = available(bucket, now, rate)
    wait = wait_seconds(tokens, rate, cost)
    return Decision(wait == 0, Bucket(tokens, now), wait)


def take(bucket: Bucket | None, now: datetime, rate: Rate, cost: int = 1) -> Decision:
    """Take `cost` tokens if they are there; otherwise leave the bucket as it is."""
    seen = check(bucket, now, rate, cost)
    if not seen.allowed:
        return seen
    return Decision(True, Bucket(seen.bucket.tokens - cost, now), 0)


def spend(bucket: Bucket | None, now: datetime, rate: Rate, cost: int = 1) -> Bucket:
    """Take `cost` tokens whatever is there (never below zero): for work already done."""
    return Bucket(max(0.0, available(bucket, now, rate) - cost), now)


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


class BucketStore(Protocol):
    def update_bucket(
        self, key: str, change: Callable[[Bucket | None], Bucket | None]
    ) -> Bucket | None: ...


@dataclass(frozen=True)
class Subject:
    """What a bucket counts (`key`) and the names an override may be given under."""

    key: str
    override_keys: Sequence[str] = ()


class RateLimiter:
    def __init__(self, limits: RateLimits, store: BucketStore) -> None:
        self.limits = limits
        self.store = store

    @property
    def enabled(self) -> bool:
        return self.limits.enabled

    def _rate(self, name: LimitName, subject: Subject) -> Rate:
        limit: Limit = getattr(self.limits, name.value)
        for key in (subject.key, *subject.override_keys):
            if key in limit.overrides:
                return Rate.of(limit, limit.overrides[key])
        return Rate.of(limit)

    def _refuse(self, name: LimitName, subject: Subject, rate: Rate, wait: int) -> None:
        days = rate.period_seconds / 86400
        period = f"{days:g} days" if days >= 1 else f"{rate.period_seconds / 3600:g} hours"
        detail = f"too many {_WHAT[name]} ({name}: {rate.burst} per {period}); "
        detail += f"retry after {wait} seconds"
        raise problem(ProblemType.RATE_LIMITED, detail, retry_after=wait)

    def check(self, name: LimitName, subject: Subject, now: datetime) -> None:
        """Refuse (rateLimited) if no token is there now; take nothing."""
        if not self.limits.enabled:
            return
        rate = self._rate(name, subject)
        seen: list[Decision] = []

        def look(bucket: Bucket | None) -> None:
            seen.append(check(bucket, now, rate))

        self.store.update_bucket(f"{name}:{subject.key}", look)
        if not seen[-1].allowed:
            self._refuse(name, subject, rate, seen[-1].retry_after)

    def take(self, name: LimitName, subject: Subject, now: datetime) -> None:
        """Take a token or refuse (rateLimited with Retry-After)."""
        if not self.limits.enabled:
            return
        rate = self._rate(name, subject)
        seen: list[Decision] = []

        def attempt(bucket: Bucket | None) -> Bucket | None:
            decision = take(bucket, now, rate)
            seen.append(decision)
            return decision.bucket if decision.allowed else None

        self.store.update_bucket(f"{name}:{subject.key}", attempt)
        if not seen[-1].allowed:
            self._refuse(name, subject, rate, seen[-1].retry_after)

    def spend(self, name: LimitName, subject: Subject, now: datetime) -> None:
        """Take a token for work already done, even if the bucket is empty."""
        if not self.limits.enabled:
            return
        rate = self._rate(name, subject)
        self.store.update_bucket(f"{name}:{subject.key}", lambda b: spend(b, now, rate))

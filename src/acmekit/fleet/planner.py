"""When a site next needs work: a pure function of its certificate, its failures and now.

Renewal. The time a certificate becomes due is the client library's renewal policy
(`acmekit.client.renewal`: the CA's ARI window if it offers one, else when a third of
the lifetime is left, half below ten days), with the site's `jitter` in [0, 1), a hash
of the site's id, as its randomness. The fleet adds one thing of its own: without a
window, renewal is spread over a further sixth of the lifetime, at
`due + lifetime * jitter/6`. A million certificates issued in one hour therefore come
due spread evenly over 15 days (for 90-day certificates), not in one hour, and each
keeps at least a sixth of its lifetime for retries. Inside a window the jitter places
the site (`start + (end - start) * jitter`); a window reaching past expiry is cut a
margin before it. The jitter is deterministic, so every worker computes the same time
and a restart changes nothing.

Retries. After the n-th consecutive failure the site is retried after
`1 minute * 2**(n-1)`, capped at 6 hours, and never later than half the time left
before its current certificate expires (but not sooner than 1 minute), so retries
quicken as expiry nears. From `failing_after` consecutive failures on, the site shows
as failing; it is still retried.

All times are integer microseconds since the epoch (UTC), as the inventory stores them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from acmekit.client import renewal
from acmekit.fleet.model import SiteState, from_us, to_us

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass(frozen=True)
class Policy:
    spread_fraction: float = 1 / 6  # renewal without a window spreads over this much more
    retry_base: int = MINUTE
    retry_cap: int = 6 * HOUR
    failing_after: int = 3


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class AriWindow:
    start: int
    end: int


def site_jitter(site_id: str) -> float:
    """A number in [0, 1) fixed by the site's id (the first 8 bytes of its SHA-256)."""
    digest = hashlib.sha256(site_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def renewal_time(
    not_before: int,
    not_after: int,
    jitter: float,
    *,
    ari: AriWindow | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> int:
    """When a certificate valid from `not_before` to `not_after` should be renewed: the
    client's policy with the site's jitter, spread over `policy.spread_fraction` of the
    lifetime when the CA offers no window."""
    start, end = from_us(not_before), from_us(not_after)
    if ari is not None:
        window = renewal.AriWindow(from_us(ari.start), from_us(ari.end))
        return to_us(renewal.renewal_time(start, end, ari=window, rand=jitter))
    spread = int((not_after - not_before) * policy.spread_fraction * jitter)
    return to_us(renewal.renewal_time(start, end)) + spread


def retry_delay(
    failure_count: int,
    now: int,
    not_after: int | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> int:
    """How long to wait after the `failure_count`-th consecutive failure (1 or more)."""
    exponent = min(max(failure_count, 1) - 1, 40)
    delay: int = min(policy.retry_base << exponent, policy.retry_cap)
    if not_after is not None:
        delay = min(delay, max(policy.retry_base, (not_after - now) // 2))
    return delay


def next_action_at(
    now: int,
    renew_at: int | None,
    failure_count: int = 0,
    not_after: int | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> int:
    """The next time a worker should look at the site.

    No certificate yet (`renew_at` None): now, or after the retry delay when failing.
    """
    if failure_count > 0:
        return now + retry_delay(failure_count, now, not_after, policy)
    return now if renew_at is None else max(now, renew_at)


def is_due(now: int, renew_at: int | None) -> bool:
    """Does the site need a (new) certificate at `now`?"""
    return renew_at is None or now >= renew_at


def state_after_failure(
    failure_count: int, has_certificate: bool, policy: Policy = DEFAULT_POLICY
) -> SiteState:
    """A site that keeps failing shows as failing; before that, as it was."""
    if failure_count >= policy.failing_after:
        return SiteState.FAILING
    return SiteState.ACTIVE if has_certificate else SiteState.PENDING


# Choosing a CA ---------------------------------------------------------------------------
#
# The fleet keeps its own count of each CA's certificates per registered domain, so that
# it never asks a CA for what the CA would refuse with `rateLimited`. The count is a
# sliding window: at most `limit` certificates whose time falls in the last `period`.
# That is at least as strict as a token bucket of `limit` tokens refilled over `period`
# (what Let's Encrypt and our CA keep), so a certificate the window allows the CA allows.


@dataclass(frozen=True)
class CaView:
    """What the planner needs to know of one CA, in the order of preference."""

    name: str
    down_until: int | None = None  # skipped until then (an outage, repeated failures)
    limit: int | None = None  # certificates per registered domain per `period`; None: none
    period: int = 7 * DAY
    usage: Mapping[str, Sequence[int]] = field(default_factory=dict)  # domain -> times


@dataclass(frozen=True)
class CaPlan:
    """The CAs to try, best first; when none may be tried, the earliest time one may."""

    order: tuple[str, ...]
    wait_until: int | None = None
    unreachable: bool = False  # no CA may be tried because every one is down (no limit)


def refill_time(times: Sequence[int], limit: int, period: int, now: int) -> int:
    """When a window of `limit` per `period` holding `times` next has room (now if it has)."""
    recent = sorted(t for t in times if t > now - period)
    if len(recent) < limit:
        return now
    return recent[len(recent) - limit] + period


def ca_room_at(view: CaView, domains: Iterable[str], now: int) -> int:
    """The earliest time `view` may issue for all of `domains` (now if it may at once)."""
    when = now if view.down_until is None else max(now, view.down_until)
    if view.limit is None:
        return when
    for domain in domains:
        when = max(when, refill_time(view.usage.get(domain, ()), view.limit, view.period, now))
    return when


def choose_cas(
    views: Sequence[CaView], domains: Iterable[str], now: int, exempt: str | None = None
) -> CaPlan:
    """The CAs that may issue for `domains` now, in order; `exempt` names a CA whose
    limits do not apply (a renewal there replaces one of its own certificates)."""
    wanted = tuple(domains)
    ready: list[str] = []
    later: list[int] = []
    for view in views:
        at = ca_room_at(view, () if view.name == exempt else wanted, now)
        if at <= now:
            ready.append(view.name)
        else:
            later.append(at)
    if ready:
        return CaPlan(tuple(ready))
    down = bool(views) and all(v.down_until is not None and v.down_until > now for v in views)
    return CaPlan((), min(later) if later else None, unreachable=down)


def ca_failure_pause(failures: int, failover_after: int, pause: int) -> int | None:
    """After `failures` consecutive failures of a CA, how long to pass it over (None: not)."""
    if failures < failover_after:
        return None
    exponent = min(failures - failover_after, 20)
    return min(pause << exponent, 6 * HOUR)


def backup_due(now: int, renew_at: int | None, not_after: int | None) -> bool:
    """A backup certificate is (re)issued when missing, due or expired."""
    return renew_at is None or not_after is None or now >= min(renew_at, not_after)

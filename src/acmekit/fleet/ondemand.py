"""On-demand sites: a name an edge sees in a handshake may become a site.

An edge asks the fleet for a certificate by the client's server name (certapi.py). For
a name no site has, the fleet answers at once that it has none (the handshake fails
cleanly, or the edge uses its fallback) and decides in the background whether the name
may become a site:

- the name matches one of the policy's patterns (`shop.example` exactly, `*.shop.example`
  any name under it), when patterns are given;
- the operator's "ask" URL answers 200 to `GET ASK?domain=NAME` (as Caddy's
  `on_demand_tls ask`), when one is given; any other answer, or none within a few
  seconds, is a no;
- fewer than `per_domain` on-demand sites of its registered domain were made over
  `domain_window`, and fewer than `per_minute` in the last minute, fleet-wide (the
  inventory counts, repos/ondemand.py), so that a flood of random server names cannot
  spend the CA's limits.

A name refused for its domain's limit refuses every name of that registered domain, and
one refused for the limit per minute every name, from memory (for `refusal_ttl` and
`rate_pause` seconds): a flood of made-up names under one domain, each new, would
otherwise each be asked of the operator's URL and take the inventory's admission lock.

An allowed name becomes a pending http-01 site, which this process's worker starts on
at once (other workers find it within `WorkerConfig.idle_sleep`); the edge's next
handshakes get its certificate. A refused name is remembered for `refusal_ttl` seconds,
so a client retrying does not ask again; decisions in flight are capped, and names
beyond the cap are dropped (the next handshake brings them back).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from acmekit.domains import registered_domain
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import normalize_names
from acmekit.fleet.repos.ondemand import Admission, Limits

log = logging.getLogger(__name__)

DAY = 86_400_000_000  # microseconds


class Verdict(StrEnum):
    """What became of a name seen at an edge (the `outcome` label in /metrics)."""

    ADDED = "added"
    TAKEN = "taken"
    NOT_ALLOWED = "not_allowed"  # no pattern matches, or not a host name
    ASK_REFUSED = "ask_refused"
    DOMAIN_LIMIT = "domain_limit"
    RATE_LIMIT = "rate_limit"
    DROPPED = "dropped"  # too many decisions in flight
    ERROR = "error"  # the inventory failed; decided again at the next handshake


@dataclass(frozen=True)
class OnDemandPolicy:
    patterns: tuple[str, ...] = ()
    ask: str | None = None  # URL; GET ?domain=NAME, 200 means yes
    per_domain: int = 10  # on-demand sites per registered domain over domain_window
    domain_window: int = 7 * DAY  # the CAs' own window for certificates per domain
    per_minute: int = 20  # on-demand sites per minute, fleet-wide
    ask_timeout: float = 5.0
    refusal_ttl: float = 60.0  # seconds a refused name (or full domain) is not looked at again
    rate_pause: float = 5.0  # seconds no name is looked at after the limit per minute
    max_pending: int = 64  # decisions in flight

    def __post_init__(self) -> None:
        if not self.patterns and self.ask is None:
            raise ValueError("on-demand sites need --on-demand patterns or an ask URL")
        for pattern in self.patterns:
            normalize_names([pattern])  # ValueError for anything but a (wildcard) name

    @property
    def limits(self) -> Limits:
        return Limits(self.per_domain, self.domain_window, self.per_minute)

    def matches(self, name: str) -> bool:
        """Does a pattern allow `name` (every name, if there are no patterns)?"""
        if not self.patterns:
            return True
        for pattern in self.patterns:
            if pattern.startswith("*."):
                if name.endswith(pattern[1:]):
                    return True
            elif name == pattern:
                return True
        return False


def host_name(raw: str) -> str | None:
    """`raw` (a server name as a client sent it) as a plain host name, or None."""
    try:
        (name,) = normalize_names([raw])
    except (ValueError, TypeError):
        return None
    return None if name.startswith("*.") else name


class _Remembered:
    """Keys refused until a monotonic time, at most `cap` of them (the oldest go first)."""

    def __init__(self, cap: int = 10_000) -> None:
        self.cap = cap
        self._until: dict[str, float] = {}

    def __contains__(self, key: str) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._until[key]
        return False

    def add(self, key: str, seconds: float) -> None:
        if len(self._until) >= self.cap:  # oldest first: dicts keep insertion order
            for old in list(self._until)[: max(1, self.cap // 10)]:
                del self._until[old]
        self._until.pop(key, None)
        self._until[key] = time.monotonic() + seconds


_EVERY_NAME = ""  # the key under which the limit per minute is remembered


class OnDemand:
    """The decisions of one fleet process; `seen(name)` never waits."""

    def __init__(
        self,
        inventory: Inventory,
        policy: OnDemandPolicy,
        now: Callable[[], int],
        added: Callable[[], None] | None = None,
    ) -> None:
        """`added` is called after each site added (the worker's `wake`)."""
        self.inventory = inventory
        self.policy = policy
        self.now = now
        self.added = added
        self.verdicts: Counter[Verdict] = Counter()
        self._pending: dict[str, asyncio.Task[Verdict]] = {}
        self._refused = _Remembered()  # names
        self._full = _Remembered()  # registered domains at their limit; _EVERY_NAME
        self._session: aiohttp.ClientSession | None = None

    def seen(self, name: str) -> None:
        """A handshake asked for `name`, which no site has: decide in the background."""
        if name in self._pending or name in self._refused:
            return
        if len(self._pending) >= self.policy.max_pending:
            self.verdicts[Verdict.DROPPED] += 1
            return
        task = asyncio.create_task(self.decide(name))
        self._pending[name] = task
        task.add_done_callback(lambda _: self._pending.pop(name, None))

    async def decide(self, name: str) -> Verdict:
        try:
            verdict = await self._verdict(name)
        except Exception:
            # The inventory failed us (a lost connection, a busy SQLite): nothing is
            # remembered, so the name's next handshake asks again.
            log.exception("on-demand decision for %s failed", name)
            self.verdicts[Verdict.ERROR] += 1
            return Verdict.ERROR
        self.verdicts[verdict] += 1
        if verdict == Verdict.ADDED:
            log.info("on-demand site for %s added", name)
            if self.added is not None:
                self.added()
        else:
            log.info("on-demand site for %s not added: %s", name, verdict)
            # The limit per minute says nothing of the name: it is looked at again
            # after the fleet-wide pause, as every other name is.
            rate = verdict == Verdict.RATE_LIMIT
            self._refused.add(name, self.policy.rate_pause if rate else self.policy.refusal_ttl)
        return verdict

    async def _verdict(self, name: str) -> Verdict:
        if host_name(name) != name or not self.policy.matches(name):
            return Verdict.NOT_ALLOWED
        domain = registered_domain(name)
        # Limits found lately: no question to the operator, no admission lock.
        if _EVERY_NAME in self._full:
            return Verdict.RATE_LIMIT
        if domain in self._full:
            return Verdict.DOMAIN_LIMIT
        if self.policy.ask is not None and not await self._ask(name):
            return Verdict.ASK_REFUSED
        admission, _ = self.inventory.on_demand.admit(name, domain, self.now(), self.policy.limits)
        if admission == Admission.DOMAIN_LIMIT:
            self._full.add(domain, self.policy.refusal_ttl)
        elif admission == Admission.RATE_LIMIT:
            self._full.add(_EVERY_NAME, self.policy.rate_pause)
        return {
            Admission.ADDED: Verdict.ADDED,
            Admission.TAKEN: Verdict.TAKEN,
            Admission.DOMAIN_LIMIT: Verdict.DOMAIN_LIMIT,
            Admission.RATE_LIMIT: Verdict.RATE_LIMIT,
        }[admission]

    async def _ask(self, name: str) -> bool:
        assert self.policy.ask is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.policy.ask_timeout)
            )
        try:
            async with self._session.get(self.policy.ask, params={"domain": name}) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("on-demand ask for %s failed: %s", name, exc)
            return False

    async def settle(self) -> None:
        """Wait for the decisions in flight (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        await asyncio.gather(*list(self._pending.values()), return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def metrics_lines(
    count: int, site_ids: Sequence[tuple[str, str]], on_demand: OnDemand | None
) -> list[str]:
    """The on-demand part of /metrics: the sites (count, and an info series, by id and
    first name, for `site_ids`: the ones made last, a bounded number, so that names seen
    at edges do not grow the scrape) and this process's verdicts."""
    lines = [
        "# HELP acmekit_fleet_on_demand_sites Sites made on demand from a name seen at an edge.",
        "# TYPE acmekit_fleet_on_demand_sites gauge",
        f"acmekit_fleet_on_demand_sites {count}",
        "# HELP acmekit_fleet_on_demand_site_info A site made on demand (those made last).",
        "# TYPE acmekit_fleet_on_demand_site_info gauge",
        *(f'acmekit_fleet_on_demand_site_info{{site="{_esc(i)}",name="{_esc(n)}"}} 1'
          for i, n in site_ids),
    ]  # fmt: skip
    if on_demand is not None:
        lines += [
            "# HELP acmekit_fleet_on_demand_verdicts_total Names seen at an edge, by outcome.",
            "# TYPE acmekit_fleet_on_demand_verdicts_total counter",
            *(f'acmekit_fleet_on_demand_verdicts_total{{outcome="{v}"}} {on_demand.verdicts[v]}'
              for v in Verdict),
        ]  # fmt: skip
    return lines


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

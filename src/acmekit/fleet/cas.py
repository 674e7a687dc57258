"""Several CAs, in order of preference: accounts, concurrency caps, health and limits.

Each CA is a `CaSpec`: a name (what is stored with every certificate it issued), its
directory URL, optional External Account Binding credentials (RFC 8555 §7.3.4), a cap
on the orders in flight to it from the whole fleet, and the limit the fleet keeps for
it: certificates per registered domain (eTLD+1 by the Public Suffix List) per period.

The cap holds across processes: an order holds one of the CA's slots in the inventory
(`CaSlots`), leased for `SlotTiming.lease` and refreshed while the order runs, so a
killed worker's slots come free within a lease. A per-process semaphore of the same
size stands in front of it, so that a worker's own orders queue in memory rather
than polling the database for slots the worker itself holds. An order that finds
every slot held waits (polling, with back-off) for up to `SlotTiming.wait`; then the
site is put off for a minute without counting a failure (`CaBusy`). A busy CA is not
passed over for the next one: it is up and answering, and the cap is the fleet's own
choice; the failover below is for CAs that fail.

An account per CA: its key is made on first use and kept in the inventory
(`fleet_ca_accounts`), and it is registered lazily, before the first order, so that a
CA that is down when the fleet starts costs nothing but a failover.

The worker asks `CaPool.plan` which CAs may take a site now (pure: planner.choose_cas,
over each CA's health and the fleet's own count of its certificates), then tries them
in that order: a CA that cannot be reached (TransportError) is passed over for
`outage_pause` at once; one that fails `failover_after` times in a row for reasons of
its own (5xx problems, timeouts, or a refusal of the fleet's account: new terms to
agree to, an account it does not know, EAB required) is passed over for a pause that
doubles (capped at 6 hours); one that answers `rateLimited` anyway is skipped for this
site. Failures
that are the site's (validation) count against neither.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from acmekit.client import Client
from acmekit.client.client import ExternalAccountBinding
from acmekit.client.errors import ServerProtocolError
from acmekit.client.solvers import Solver
from acmekit.client.transport import HttpTransport, TransportError
from acmekit.clock import Clock
from acmekit.fleet import persist, planner
from acmekit.fleet.acme import AcmeIssuer, Delegated, key_from_pem, key_to_pem, new_key
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import Issuer, OrderRequest, OrderStarted, RenewalWindow
from acmekit.fleet.model import CaSlot
from acmekit.protocol.messages import ChallengeType
from acmekit.protocol.problems import AcmeError, ProblemType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaSpec:
    name: str
    directory: str
    eab_kid: str | None = None
    eab_hmac_key: str | None = None  # base64url, as the CA handed it out
    concurrency: int | None = 10  # orders in flight to this CA, fleet-wide; None: no cap
    certificates_per_domain: int | None = 50  # None: the fleet keeps no count
    limit_period: int = 7 * planner.DAY
    failover_after: int = 3  # consecutive failures of the CA's own
    failure_pause: int = 5 * planner.MINUTE  # first pause after that; doubles
    outage_pause: int = planner.MINUTE  # after a TransportError
    ca_bundle: str | None = None

    def eab(self) -> ExternalAccountBinding | None:
        if self.eab_kid is None or self.eab_hmac_key is None:
            return None
        return ExternalAccountBinding.from_base64url(self.eab_kid, self.eab_hmac_key)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, TransportError | TimeoutError | ConnectionError)


def is_rate_limited(exc: BaseException) -> bool:
    return isinstance(exc, AcmeError) and exc.problem.type == ProblemType.RATE_LIMITED


# Problems with the fleet's account at a CA (RFC 8555 §6.7), which every order there
# meets whatever the site: new terms to agree to, an account the CA no longer knows,
# External Account Binding it requires. The next CA may take the site.
_ACCOUNT_PROBLEMS = frozenset(
    {
        ProblemType.ACCOUNT_DOES_NOT_EXIST,
        ProblemType.EXTERNAL_ACCOUNT_REQUIRED,
        ProblemType.USER_ACTION_REQUIRED,
    }
)


def is_ca_fault(exc: BaseException) -> bool:
    """A failure that says something about the CA (or the fleet's account there) rather
    than the site."""
    if is_outage(exc) or isinstance(exc, ServerProtocolError):
        return True
    if isinstance(exc, AcmeError):
        status = exc.problem.status or 0
        if exc.problem.type in _ACCOUNT_PROBLEMS:
            return True
        return exc.problem.type == ProblemType.SERVER_INTERNAL or status >= 500
    return False


class RegisteringIssuer:
    """An AcmeIssuer whose account is registered (with EAB if configured) before its
    first order, and whose account URL is kept in the inventory."""

    def __init__(self, inner: AcmeIssuer, spec: CaSpec, inventory: Inventory) -> None:
        self.inner = inner
        self.spec = spec
        self.inventory = inventory
        self.name = spec.name
        self._lock = asyncio.Lock()
        self._remembered = False

    async def ensure_account(self) -> None:
        client = self.inner.client
        if client.account_url is not None and self._remembered:
            return
        async with self._lock:
            if client.account_url is None:
                account = await client.register(eab=self.spec.eab())
                self.inventory.cas.set_account_url(self.spec.name, account.url)
            if not self._remembered:
                # What a dns-persist-01 site's owner publishes for this CA (persist.py).
                await persist.remember(client, self.spec.name, self.inventory)
                self._remembered = True

    async def issue(self, request: OrderRequest, started: OrderStarted) -> str:
        await self.ensure_account()
        return await self.inner.issue(request, started)

    async def renewal_window(self, fullchain_pem: str) -> RenewalWindow | None:
        return await self.inner.renewal_window(fullchain_pem)


@dataclass
class CaEntry:
    spec: CaSpec
    issuer: Issuer
    slots: asyncio.Semaphore | None = field(init=False)  # this process's share of the cap

    def __post_init__(self) -> None:
        cap = self.spec.concurrency
        self.slots = None if cap is None else asyncio.Semaphore(cap)

    @property
    def name(self) -> str:
        return self.spec.name


class CaPool:
    """The CAs in order of preference, each with its issuer."""

    def __init__(self, entries: Sequence[CaEntry]) -> None:
        if not entries:
            raise ValueError("at least one CA is needed")
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"CA names must differ: {names}")
        self.entries = tuple(entries)
        self._by_name = {e.name: e for e in entries}

    @classmethod
    def single(cls, issuer: Issuer) -> CaPool:
        """One CA and no limits kept: how a fleet with one issuer has always run."""
        spec = CaSpec(issuer.name, "", concurrency=None, certificates_per_domain=None)
        return cls([CaEntry(spec, issuer)])

    def get(self, name: str) -> CaEntry | None:
        return self._by_name.get(name)

    def views(self, inventory: Inventory, domains: Sequence[str], now: int) -> list[planner.CaView]:
        asks: dict[str, tuple[Sequence[str], int, int, int | None]] = {}
        for entry in self.entries:
            spec = entry.spec
            if spec.certificates_per_domain is not None and domains:
                since, stale = now - spec.limit_period, now - RESERVATION_TTL
                asks[spec.name] = (domains, since, stale, spec.certificates_per_domain)
        health, usage = inventory.cas.standing(self._by_name, asks)
        return [
            planner.CaView(
                e.name,
                health[e.name].down_until,
                e.spec.certificates_per_domain,
                e.spec.limit_period,
                usage.get(e.name, {}),
            )
            for e in self.entries
        ]

    def plan(
        self, inventory: Inventory, domains: Sequence[str], now: int, exempt: str | None = None
    ) -> planner.CaPlan:
        return planner.choose_cas(self.views(inventory, domains, now), domains, now, exempt)

    def reserve(
        self,
        inventory: Inventory,
        entry: CaEntry,
        site_id: str,
        domains: Sequence[str],
        now: int,
        exempt: bool = False,
    ) -> bool:
        """Count the order against the CA's limit, if it still has room (atomically).
        An `exempt` order (a renewal replacing the CA's own certificate, or one resumed)
        is counted whatever the room."""
        spec = entry.spec
        if spec.certificates_per_domain is None:
            return True
        limit, period = spec.certificates_per_domain, spec.limit_period

        def room(usage: dict[str, list[int]]) -> bool:
            return all(planner.refill_time(t, limit, period, now) <= now for t in usage.values())

        window = (now - period, now - RESERVATION_TTL)
        return inventory.cas.reserve(
            spec.name, site_id, domains, now, None if exempt else room, window, latest=limit
        )

    def record_failure(
        self, inventory: Inventory, entry: CaEntry, exc: BaseException, now: int
    ) -> None:
        """Count a failure that was the CA's; pass the CA over as its spec says."""
        spec = entry.spec
        if is_outage(exc):
            inventory.cas.failed(spec.name, str(exc), lambda _: now + spec.outage_pause)
            log.warning("CA %s unreachable; passed over for now", spec.name)
            return

        def until(failures: int) -> int | None:
            pause = planner.ca_failure_pause(failures, spec.failover_after, spec.failure_pause)
            return None if pause is None else now + pause

        if inventory.cas.failed(spec.name, str(exc), until) >= spec.failover_after:
            log.warning(
                "CA %s failed %d times in a row; passed over", spec.name, spec.failover_after
            )


class CaBusy(Exception):
    """Every slot of the CA stayed held, fleet-wide, for as long as an order may wait."""

    def __init__(self, ca: str) -> None:
        super().__init__(f"waiting for a free slot at {ca} (its cap on orders in flight)")
        self.ca = ca


@dataclass(frozen=True)
class SlotTiming:
    lease: int = 2 * planner.MINUTE  # a slot's lease; refreshed every third of it
    wait: float = 120.0  # seconds an order waits for a slot before its site is put off


SLOT_POLL_FIRST = 0.05  # seconds
SLOT_POLL_MAX = 1.0


def slot_poll_delay(attempt: int, jitter: float) -> float:
    """Seconds before looking for a free slot again after the `attempt`-th miss (from
    1): 50 ms doubling up to 1 s, scaled into its upper half by `jitter` in [0, 1) so
    that workers waiting on one CA do not ask in step."""
    base = min(SLOT_POLL_FIRST * (1 << min(max(attempt, 1) - 1, 16)), SLOT_POLL_MAX)
    return base * (0.5 + jitter / 2)


class CaSlots:
    """This worker's side of the fleet-wide caps (see the top of the module).

    Waiting and refreshing run on the event loop's timer, not the injected Clock: what
    they measure is how long an order really takes, and a test clock whose sleep
    returns at once would make them spin. Lease times written to the inventory come
    from the Clock, as every other time there does."""

    def __init__(
        self, inventory: Inventory, owner: str, now: Callable[[], int], timing: SlotTiming
    ) -> None:
        self.inventory = inventory
        self.owner = owner
        self.now = now
        self.timing = timing
        self._made: set[tuple[str, int]] = set()

    @asynccontextmanager
    async def hold(self, entry: CaEntry, site_id: str) -> AsyncIterator[CaSlot | None]:
        """A slot of `entry`'s CA for the length of the block (None: the CA has no cap);
        CaBusy if none came free within `timing.wait`."""
        cap, local = entry.spec.concurrency, entry.slots
        if cap is None or local is None:
            yield None
            return
        deadline = asyncio.get_running_loop().time() + self.timing.wait
        try:
            await asyncio.wait_for(local.acquire(), self.timing.wait)
        except TimeoutError:
            raise CaBusy(entry.name) from None
        try:
            slot = await self._take(entry.name, cap, site_id, deadline)
            keeper = asyncio.create_task(self._keep(slot))
            try:
                yield slot
            finally:
                # The keeper is parked in its sleep: cancelled there, it writes nothing more.
                keeper.cancel()
                self.inventory.cas.release_slot(slot)
        finally:
            local.release()

    async def _take(self, ca: str, cap: int, site_id: str, deadline: float) -> CaSlot:
        if (ca, cap) not in self._made:
            self.inventory.cas.ensure_slots(ca, cap)
            self._made.add((ca, cap))
        holder = f"{self.owner[:140]}/{secrets.token_hex(4)}"  # one order, not one worker
        loop, misses = asyncio.get_running_loop(), 0
        while True:
            now = self.now()
            slot = self.inventory.cas.take_slot(
                ca, cap, holder, site_id, now, now + self.timing.lease
            )
            if slot is not None:
                return slot
            misses += 1
            delay = slot_poll_delay(misses, random.random())
            if loop.time() + delay > deadline:
                raise CaBusy(ca)
            await asyncio.sleep(delay)

    async def _keep(self, slot: CaSlot) -> None:
        """Move the slot's lease forward while the order runs."""
        every = self.timing.lease / 3 / planner.SECOND
        while True:
            await asyncio.sleep(every)
            try:
                kept = self.inventory.cas.refresh_slot(slot, self.now() + self.timing.lease)
            except Exception as exc:  # the next try may do; the order goes on meanwhile
                log.warning("CA %s: slot %d not refreshed: %s", slot.ca, slot.number, exc)
                continue
            if not kept:
                # Only after the worker stalled for a whole lease: the cap may be exceeded
                # by this order until it ends.
                log.warning("CA %s: slot %d was lost before its order ended", slot.ca, slot.number)
                return


# A reservation of an order in flight counts this long; one left by a dead worker
# stops counting after it (longer than any lease).
RESERVATION_TTL = planner.HOUR


async def open_pool(
    inventory: Inventory,
    specs: Sequence[CaSpec],
    solvers: Mapping[ChallengeType, Solver],
    clock: Clock,
    stack: AsyncExitStack,
    *,
    delegated: Delegated | None = None,
    transports: Mapping[str, HttpTransport] | None = None,
) -> CaPool:
    """A pool of `specs`, each with a Client for its account (key made and stored in the
    inventory on first use; registered before its first order). `transports` by CA
    name replace the default HTTPS transport (an in-process CA in tests)."""
    entries = []
    for spec in specs:
        key = key_from_pem(inventory.cas.account_key(spec.name, key_to_pem(new_key())))
        client = Client(
            spec.directory,
            key,
            transport=(transports or {}).get(spec.name),
            clock=clock,
            account_url=inventory.cas.account_url(spec.name),
            ca_bundle=spec.ca_bundle,
        )
        await stack.enter_async_context(client)
        issuer = AcmeIssuer(client, solvers, spec.name, delegated)
        entries.append(CaEntry(spec, RegisteringIssuer(issuer, spec, inventory)))
    return CaPool(entries)

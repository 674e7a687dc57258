"""Workers keep a CA's cap on orders in flight between them, not each on its own.

Two workers, each with its own inventory client and event loop in a thread of its own
(as two processes have), share one SQLite file or one PostgreSQL database (127.0.0.1)
and issue through one CA capped at 2; each could handle 4 sites at once. The CA (the
local test CA) counts the orders in flight across both: never more than 2. Orders are
held until a worker was refused a slot because all were taken, so the workers do
contend, and a cap kept per worker would let more than 2 in meanwhile. Both workers'
attempts show in the inventory's figures for the CA. A worker that finds every slot held
by a worker that died waits for the lease to run out and takes the slot over; if that
takes longer than it may wait, the site is put off without a failure.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

from acmekit.clock import SystemClock
from acmekit.fleet import planner
from acmekit.fleet.cas import CaEntry, CaPool, CaSpec
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import OrderRequest, OrderStarted
from acmekit.fleet.model import CaSlot, ChallengeMethod, SiteState, to_us
from acmekit.fleet.repos.cas import CaRepository
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import LocalIssuer, MemoryEdge

CA = "capped-ca"
CAP = 2
SITES = 16
CLOCK = SystemClock()


def now() -> int:
    return to_us(CLOCK.now())


class Watched(CaRepository):
    """CA bookkeeping that tells when it was refused a CA slot (all were held)."""

    def __init__(self, inventory: Inventory, refused: threading.Event) -> None:
        super().__init__(inventory.engine)
        self.refused = refused

    def take_slot(
        self, ca: str, cap: int, holder: str, site_id: str, now: int, until: int
    ) -> CaSlot | None:
        slot = super().take_slot(ca, cap, holder, site_id, now, until)
        if slot is None:
            self.refused.set()
        return slot


@dataclass
class Counting:
    """The local CA, counting orders in flight from every worker (threads, hence the
    lock). With `hold`, an order waits until that event is set (at most 30 s)."""

    inner: LocalIssuer = field(default_factory=lambda: LocalIssuer(now=CLOCK.now))
    name: str = CA
    hold: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    most: int = 0
    orders: int = 0

    async def issue(self, request: OrderRequest, started: OrderStarted) -> str:
        with self.lock:
            self.in_flight += 1
            self.orders += 1
            self.most = max(self.most, self.in_flight)
        try:
            if self.hold is not None:
                await asyncio.to_thread(self.hold.wait, 30)
            return await self.inner.issue(request, started)
        finally:
            with self.lock:
                self.in_flight -= 1


def capped_pool(issuer: Counting, cap: int = CAP, limit: int | None = None) -> CaPool:
    """A pool of one process: its own semaphore, as a worker process has."""
    spec = CaSpec(CA, "", concurrency=cap, certificates_per_domain=limit)
    return CaPool([CaEntry(spec, issuer)])


def _work(
    url: str, owner: str, issuer: Counting, refused: threading.Event, failures: list[BaseException]
) -> None:
    """One worker process: passes until nothing is due."""
    try:
        inventory = Inventory.from_url(url)
        inventory.cas = Watched(inventory, refused)
        config = WorkerConfig(owner=owner, batch=8, concurrency=4)
        worker = Worker(inventory, capped_pool(issuer), [MemoryEdge("edge")], CLOCK, config)

        async def passes() -> None:
            while await worker.run_once():
                pass

        asyncio.run(passes())
        inventory.close()
    except BaseException as exc:  # reported by the test
        failures.append(exc)


def test_two_workers_keep_one_cap_between_them(db_url: str) -> None:
    inventory = Inventory.from_url(db_url)
    names = [(f"s{i}.cap{i}.test",) for i in range(SITES)]
    ids = inventory.sites.add_sites(names, ChallengeMethod.HTTP_01, now())
    refused, failures = threading.Event(), list[BaseException]()
    issuer = Counting(hold=refused)
    threads = [
        threading.Thread(target=_work, args=(db_url, f"w{i}", issuer, refused, failures))
        for i in (1, 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert issuer.most == CAP  # each worker alone would have let 2 through: 4 in all
    assert issuer.orders == SITES
    for site_id in ids:
        site = inventory.sites.site(site_id)
        assert site is not None and site.state == SiteState.ACTIVE and site.current_version == 1
    assert inventory.cas.slots_held(CA, now()) == {}
    [bucket] = inventory.cas.stats(now() - planner.HOUR)  # written by both workers
    assert (bucket.ca, bucket.issued, bucket.failed) == (CA, SITES, 0)
    inventory.close()


async def test_a_dead_workers_slot_is_taken_over_when_its_lease_ends(tmp_path: Path) -> None:
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    site = inventory.sites.add_site(("late.cap.test",), ChallengeMethod.HTTP_01, now())
    inventory.cas.ensure_slots(CA, 1)
    dead = inventory.cas.take_slot(CA, 1, "dead/1", "other", now(), now() + planner.SECOND // 2)
    assert dead is not None
    issuer = Counting()
    config = WorkerConfig(owner="w", slot_wait=30.0)
    worker = Worker(inventory, capped_pool(issuer, cap=1), [MemoryEdge("edge")], CLOCK, config)
    assert await worker.run_once() == 1
    found = inventory.sites.site(site.id)
    assert found is not None and found.state == SiteState.ACTIVE and issuer.orders == 1
    assert not inventory.cas.release_slot(dead)  # it was taken over, and freed since
    assert inventory.cas.slots_held(CA, now()) == {}
    inventory.close()


async def test_a_site_is_put_off_while_every_slot_stays_held(tmp_path: Path) -> None:
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    site = inventory.sites.add_site(("busy.cap.test",), ChallengeMethod.HTTP_01, now())
    inventory.cas.ensure_slots(CA, 1)
    assert inventory.cas.take_slot(CA, 1, "dead/1", "other", now(), now() + planner.HOUR)
    issuer = Counting()
    config = WorkerConfig(owner="w", slot_wait=0.3)
    pool = capped_pool(issuer, cap=1, limit=50)
    worker = Worker(inventory, pool, [MemoryEdge("edge")], CLOCK, config)
    before = now()
    assert await worker.run_once() == 1
    found = inventory.sites.site(site.id)
    assert found is not None and found.state == SiteState.PENDING
    assert found.failure_count == 0 and found.current_version == 0
    assert found.last_problem is not None
    assert f"waiting for a free slot at {CA}" in found.last_problem["detail"]
    assert found.next_action_at is not None
    assert before + planner.MINUTE <= found.next_action_at <= now() + planner.MINUTE
    # No order was sent, none counted, and the limit's reservation was given back.
    assert issuer.orders == 0 and inventory.cas.stats(0) == []
    assert inventory.cas.usage(CA, ["cap.test"], 0, 0) == {"cap.test": []}
    inventory.close()

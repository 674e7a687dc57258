"""Two workers, each with its own connection pool and event loop (in its own thread),
race over the same due sites in one PostgreSQL inventory: every site ends with exactly
one current certificate per renewal and nothing is issued twice."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, SiteState, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

pytestmark = pytest.mark.postgres

SITES = 300


def _race(url: str, issuer: LocalIssuer, clock: FakeClock, edge: MemoryEdge) -> Counter[str]:
    """Run two workers until neither finds work; how many sites each handled."""
    handled: Counter[str] = Counter()

    def work(owner: str) -> None:
        inventory = Inventory.from_url(url)
        config = WorkerConfig(owner=owner, batch=7, concurrency=4)
        worker = Worker(inventory, issuer, [edge], clock, config)

        async def loop() -> None:
            while n := await worker.run_once():
                handled[owner] += n

        asyncio.run(loop())
        inventory.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return handled


def test_two_workers_on_postgres_issue_each_site_exactly_once() -> None:
    clock = FakeClock(datetime(2025, 1, 1, tzinfo=UTC))
    issuer = LocalIssuer(now=clock.now)
    edge = MemoryEdge("edge")
    with fresh_postgres_database() as url:
        inventory = Inventory.from_url(url)
        names = [(f"race{i}.fleet.test",) for i in range(SITES)]
        ids = inventory.sites.add_sites(names, ChallengeMethod.HTTP_01, to_us(clock.now()))
        first = _race(url, issuer, clock, edge)
        assert sum(first.values()) == SITES and len(first) == 2, first
        for site_id in ids:
            assert inventory.sites.force_renewal(site_id, to_us(clock.now()))
        second = _race(url, issuer, clock, edge)
        assert sum(second.values()) == SITES, second
        assert Counter(site for site, _ in issuer.issued) == Counter({i: 2 for i in ids})
        assert len(issuer.replaced) == SITES
        for site in inventory.sites.page(limit=SITES):
            assert site.state == SiteState.ACTIVE and site.current_version == 2
            assert [v.version for v in inventory.sites.versions(site.id)] == [1, 2]
            assert site.lease_owner is None
        assert len(edge.files) == SITES
        inventory.close()

"""One worker pass: it leases more as slots free up, never holds more than `batch`
sites nor handles more than `concurrency` at once, and stops when nothing is due.

The issuer is the local test CA (testkit/acmekit_testkit/fleet_testca.py), wrapped to yield to
the event loop while it "works", so that handling really overlaps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import OrderRequest, OrderStarted
from acmekit.fleet.model import ChallengeMethod, SiteState, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Watching:
    """The local CA, noting how many orders overlap and how many sites are leased."""

    inner: LocalIssuer
    inventory: Inventory
    name: str = "local-test-ca"
    in_flight: int = 0
    most_in_flight: int = 0
    most_held: int = 0
    leases: list[int] = field(default_factory=list)

    async def issue(self, request: OrderRequest, started: OrderStarted) -> str:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        held = sum(s.lease_owner == "pass" for s in self.inventory.sites.page(limit=1000))
        self.most_held = max(self.most_held, held)
        for _ in range(3):
            await asyncio.sleep(0)
        self.in_flight -= 1
        return await self.inner.issue(request, started)


async def test_a_pass_leases_more_as_slots_free_up(tmp_path: Path) -> None:
    clock = FakeClock(START)
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    issuer = Watching(LocalIssuer(now=clock.now), inventory)
    names = [(f"s{i}.pass.test",) for i in range(23)]
    inventory.sites.add_sites(names, ChallengeMethod.HTTP_01, to_us(START))
    config = WorkerConfig(owner="pass", batch=6, concurrency=4)
    worker = Worker(inventory, issuer, [MemoryEdge("edge")], clock, config)

    assert await worker.run_once() == 23  # one pass, though a batch is 6
    assert issuer.most_in_flight == 4
    assert issuer.most_held <= 6
    assert all(s.state == SiteState.ACTIVE for s in inventory.sites.page(limit=100))
    assert all(s.lease_owner is None for s in inventory.sites.page(limit=100))
    assert await worker.run_once() == 0  # nothing due
    inventory.close()

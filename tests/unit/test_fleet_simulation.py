"""90 simulated days of a 2,000-site fleet, on an injected clock.

What is under test is the planner and the worker's loop (leasing, renewal times,
retries, deployment, the database), not ACME on the wire: the issuer is
`LocalIssuer`, a real function that signs real short-lived-key certificates under a
local root made with `cryptography` (testkit/acmekit_testkit/fleet_testca.py), and the edges keep
what they are given in memory. The component tests drive the same worker against our
CA over ACME. The inventory is SQLite in memory: the same SQL as on a file, without
the file's I/O.

Stated bound: the 2,000 certificates issued in the first hour come due over 15 days
(days 60 to 75), about 5.6 an hour; no later hour may hold more than 25 issuances.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, SiteState, from_us, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

SITES = 2_000
DAYS = 90
BUSIEST_HOUR_BOUND = 25
START = datetime(2025, 1, 1, tzinfo=UTC)


class Fleet:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(START)
        self.inventory = Inventory.from_url("sqlite://")  # in memory: one connection
        self.issuer = LocalIssuer(now=self.clock.now)
        self.edges = [MemoryEdge("edge-a"), MemoryEdge("edge-b")]
        config = WorkerConfig(owner="sim", batch=500, concurrency=100)
        self.worker = Worker(self.inventory, self.issuer, self.edges, self.clock, config)
        names = [(f"site{i}.fleet.test",) for i in range(SITES)]
        self.inventory.sites.add_sites(names, ChallengeMethod.HTTP_01, to_us(START))
        self.expired_seen = 0

    async def run_until(self, end: datetime) -> None:
        """Work off everything due, then jump to the next due time (an hour at most),
        checking at every stop that no edge serves an expired certificate."""
        while self.clock.now() < end:
            while await self.worker.run_once():
                pass
            self.check_nothing_expired()
            due = self.inventory.sites.next_due()
            step = timedelta(hours=1) if due is None else from_us(due) - self.clock.now()
            self.clock.advance(min(max(step, timedelta(seconds=1)), timedelta(hours=1)))

    def check_nothing_expired(self) -> None:
        if self.clock.now() - START < timedelta(hours=1):
            return  # still onboarding
        for edge in self.edges:
            assert len(edge.expiry) == SITES
            soonest = min(edge.expiry.values())
            assert soonest > self.clock.now(), f"{edge.name} serves an expired certificate"

    def hourly_issuances(self) -> Counter[int]:
        return Counter(int((t - START).total_seconds() // 3600) for _, t in self.issuer.issued)


async def test_ninety_days_renew_everything_spread_out(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    await fleet.run_until(START + timedelta(days=DAYS))
    per_hour = fleet.hourly_issuances()
    assert per_hour[0] == SITES  # onboarding: everything at once
    renewals = {h: n for h, n in per_hour.items() if h > 0}
    assert sum(renewals.values()) == SITES  # each site renewed exactly once
    assert min(renewals) >= 60 * 24 and max(renewals) < 75 * 24 + 1
    assert max(renewals.values()) <= BUSIEST_HOUR_BOUND, max(renewals.values())
    assert len(renewals) > 300  # spread over most of the 360 hours of the window
    for site in fleet.inventory.sites.page(limit=SITES):
        assert site.state == SiteState.ACTIVE and site.current_version == 2
        assert len(fleet.inventory.sites.versions(site.id)) == 2
    assert len(fleet.issuer.replaced) == SITES  # every renewal named its predecessor once
    fleet.inventory.close()


async def test_a_two_day_ca_outage_and_a_dead_edge_expire_nothing(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    await fleet.run_until(START + timedelta(days=62))
    fleet.issuer.down = True
    fleet.edges[1].failing = True
    await fleet.run_until(START + timedelta(days=64))
    failing = fleet.inventory.sites.counts_by_state()[SiteState.FAILING]
    assert failing > 0
    problems = [s.last_problem for s in fleet.inventory.sites.page(SiteState.FAILING, limit=5)]
    assert all(p is not None and "CaOutage" in p["detail"] for p in problems)
    fleet.issuer.down = False
    fleet.edges[1].failing = False
    # Retries are capped at 6 hours: within that, every failing site has recovered.
    await fleet.run_until(START + timedelta(days=64, hours=6, minutes=1))
    assert fleet.inventory.sites.counts_by_state()[SiteState.FAILING] == 0
    await fleet.run_until(START + timedelta(days=DAYS))
    for site in fleet.inventory.sites.page(limit=SITES):
        assert site.state == SiteState.ACTIVE and site.current_version == 2
        assert {d.version for d in fleet.inventory.sites.deployments(site.id).values()} == {2}
    fleet.inventory.close()

"""What a site's state says is true when it says it: `active` only once the current
certificate is on every edge, and a total CA outage neither hides a failing site nor
blames the CAs' limits.

The issuer is the local test CA (testkit/acmekit_testkit/fleet_testca.py); the edges keep
what they are given in memory and note what the inventory (what the API shows) said of
the site at the moment a certificate reached them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from acmekit.fleet.cas import CaEntry, CaPool, CaSpec
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import OrderRequest, OrderStarted, RenewalWindow
from acmekit.fleet.model import ChallengeMethod, Site, SiteState, to_us
from acmekit.fleet.planner import DAY
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class WatchedEdge(MemoryEdge):
    """An edge that notes the site's stored state just before each deployment."""

    inventory: Inventory | None = None
    seen: list[SiteState] = field(default_factory=list)

    async def deploy(self, site: Site, fullchain_pem: bytes, key_pem: bytes) -> None:
        assert self.inventory is not None
        stored = self.inventory.sites.site(site.id)
        assert stored is not None
        self.seen.append(stored.state)
        await super().deploy(site, fullchain_pem, key_pem)


@dataclass
class AriIssuer(LocalIssuer):
    """The local CA with renewal information; it notes whether the edge already held
    the certificate it is asked about."""

    edge: MemoryEdge | None = None
    asked_with_edge: list[bool] = field(default_factory=list)

    async def renewal_window(self, fullchain_pem: str) -> RenewalWindow | None:
        assert self.edge is not None
        held = {chain.decode() for chain, _ in self.edge.files.values()}
        self.asked_with_edge.append(fullchain_pem in held)
        return None


@dataclass
class FlakyIssuer(LocalIssuer):
    """The local CA that can be unreachable (a connection refused: the CA's fault)."""

    unreachable: bool = False

    async def issue(self, request: OrderRequest, started: OrderStarted) -> str:
        if self.unreachable:
            raise ConnectionRefusedError(f"{self.name} refused the connection")
        return await super().issue(request, started)


def _inventory(tmp_path: Path) -> Inventory:
    return Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")


async def test_a_site_is_active_only_once_on_every_edge(tmp_path: Path) -> None:
    clock = FakeClock(START)
    inventory = _inventory(tmp_path)
    edges = [WatchedEdge(f"edge{i}", inventory=inventory) for i in range(2)]
    issuer = AriIssuer(now=clock.now, edge=edges[0])
    (site_id,) = inventory.sites.add_sites([("a.states.test",)], ChallengeMethod.HTTP_01, 0)
    worker = Worker(inventory, issuer, edges, clock, WorkerConfig(owner="w"))

    assert await worker.run_once() == 1
    assert [e.seen for e in edges] == [[SiteState.ISSUING], [SiteState.ISSUING]]
    assert issuer.asked_with_edge == [True]  # renewal information once deployed
    site = inventory.sites.site(site_id)
    assert site is not None and site.state == SiteState.ACTIVE
    deployed = inventory.sites.deployments(site_id)
    assert {e: d.version for e, d in deployed.items()} == {"edge0": 1, "edge1": 1}
    inventory.close()


async def test_a_site_an_edge_refuses_is_not_active(tmp_path: Path) -> None:
    clock = FakeClock(START)
    inventory = _inventory(tmp_path)
    good, bad = MemoryEdge("good"), MemoryEdge("bad", failing=True)
    (site_id,) = inventory.sites.add_sites([("b.states.test",)], ChallengeMethod.HTTP_01, 0)
    worker = Worker(inventory, LocalIssuer(now=clock.now), [good, bad], clock)

    states = []
    for _ in range(4):
        await worker.run_once()
        site = inventory.sites.site(site_id)
        assert site is not None
        states.append(site.state)
        clock.advance(timedelta(hours=1))
    # stored and on one edge: still issuing; refused three times: failing
    assert states == [SiteState.ISSUING, SiteState.ISSUING, SiteState.FAILING, SiteState.FAILING]
    assert "b.states.test" in good.files and not bad.files

    bad.failing = False
    await worker.run_once()
    site = inventory.sites.site(site_id)
    assert site is not None and site.state == SiteState.ACTIVE
    assert "b.states.test" in bad.files
    inventory.close()


async def test_with_every_ca_down_a_failing_site_stays_failing(tmp_path: Path) -> None:
    clock = FakeClock(START)
    inventory = _inventory(tmp_path)
    specs = [CaSpec(n, f"https://{n}.invalid/directory", concurrency=None) for n in "ab"]
    issuers = [FlakyIssuer(now=clock.now, name=s.name) for s in specs]
    pool = CaPool([CaEntry(s, i) for s, i in zip(specs, issuers, strict=True)])
    (site_id,) = inventory.sites.add_sites([("c.states.test",)], ChallengeMethod.HTTP_01, 0)
    worker = Worker(inventory, pool, [MemoryEdge("edge")], clock, WorkerConfig(owner="w"))
    await worker.run_once()

    clock.advance(timedelta(days=80))  # the certificate is due
    for issuer in issuers:
        issuer.unreachable = True
    for _ in range(10):
        await worker.run_once()
        site = inventory.sites.site(site_id)
        assert site is not None
        if site.state == SiteState.FAILING:
            break
        clock.advance(timedelta(hours=1))
    assert site.state == SiteState.FAILING and site.failure_count == 3

    # Every CA passed over for a day: when the site comes due it cannot be tried at all.
    far = to_us(clock.now()) + DAY
    for spec in specs:
        inventory.cas.failed(spec.name, "refused", lambda _: far)
    clock.advance(timedelta(hours=7))
    assert await worker.run_once() == 1
    site = inventory.sites.site(site_id)
    assert site is not None
    assert site.state == SiteState.FAILING
    assert site.failure_count == 3  # waiting is no new failure
    assert site.last_problem is not None
    assert site.last_problem["detail"].startswith("no CA reachable")
    inventory.close()

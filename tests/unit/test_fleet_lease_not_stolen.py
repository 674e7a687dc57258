"""A site a worker holds is not taken from it by the API: "renew now" and "remove" made
while a worker deploys the site do not hand it to a second worker at once (two orders
for one site, or a removal that the first worker's deployment then undoes), and are
not lost either: the site comes due as soon as the holder releases it.

The issuer is the local test CA and the edges keep files in memory
(testkit/acmekit_testkit/fleet_testca.py); one edge holds a deployment until told."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, SiteState, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.fleet_testca import FakeClock, HeldEdge, LocalIssuer, MemoryEdge
from acmekit_testkit.tiers import BACKEND_PARAMS
from acmekit_testkit.waits import until

START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(params=BACKEND_PARAMS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, "fleet.db") as found:
        yield found


async def _held_in_deployment(
    url: str,
) -> tuple[Inventory, FakeClock, LocalIssuer, HeldEdge, str, asyncio.Task[int]]:
    """A site with a certificate on one edge; a second edge is added, and worker "one"
    is left deploying to it, holding the site."""
    clock = FakeClock(START)
    inventory = Inventory.from_url(url)
    issuer = LocalIssuer(now=clock.now)
    first = MemoryEdge("first")
    (site_id,) = inventory.sites.add_sites([("a.lease.test",)], ChallengeMethod.HTTP_01, 0)
    assert await Worker(inventory, issuer, [first], clock, WorkerConfig(owner="one")).run_once()
    clock.advance(timedelta(days=1))
    inventory.sites.force_renewal(site_id, to_us(clock.now()))  # due, so a worker takes it
    second = HeldEdge("second", hold=True)
    one = Worker(inventory, issuer, [first, second], clock, WorkerConfig(owner="one"))
    task = asyncio.create_task(one.run_once())
    await until(lambda: second.waiting == 1)
    return inventory, clock, issuer, second, site_id, task


async def test_renew_now_while_held_neither_doubles_the_order_nor_is_lost(url: str) -> None:
    inventory, clock, issuer, edge, site_id, one = await _held_in_deployment(url)
    assert len(issuer.issued) == 2
    assert inventory.sites.force_renewal(site_id, to_us(clock.now()))
    two = Worker(inventory, issuer, [edge], clock, WorkerConfig(owner="two"))
    handled = await two.run_once()
    assert len(issuer.issued) == 2  # no second order for the site
    assert handled == 0  # "one" holds it
    edge.go.set()
    assert await one == 1
    site = inventory.sites.site(site_id)
    assert site is not None and site.lease_owner is None
    # the renewal asked while "one" held it: due at once
    assert site.next_action_at is not None and site.next_action_at <= to_us(clock.now())
    inventory.close()


async def test_remove_while_held_leaves_nothing_on_the_edges(url: str) -> None:
    inventory, clock, issuer, edge, site_id, one = await _held_in_deployment(url)
    assert inventory.sites.remove_site(site_id, to_us(clock.now()))
    two = Worker(inventory, issuer, [edge], clock, WorkerConfig(owner="two"))
    handled = await two.run_once()
    edge.go.set()
    assert await one == 1
    await two.run_once()
    assert edge.files == {}  # the key of a removed site is not left behind
    assert handled == 0  # "one" held the site; the removal came due once it was let go
    site = inventory.sites.site(site_id)
    assert site is not None and site.state == SiteState.REMOVED
    inventory.close()


async def test_a_removal_after_the_lease_ended_is_not_undone_by_the_holder(url: str) -> None:
    """An edge slower than the lease: the site is removed, and taken off the edges by
    another worker, before the first one's deployment lands."""
    inventory, clock, issuer, edge, site_id, one = await _held_in_deployment(url)
    clock.advance(timedelta(minutes=16))  # past the lease (15 minutes)
    assert inventory.sites.remove_site(site_id, to_us(clock.now()))
    two = Worker(inventory, issuer, [edge], clock, WorkerConfig(owner="two"))
    assert await two.run_once() == 1
    site = inventory.sites.site(site_id)
    assert site is not None and site.state == SiteState.REMOVED
    edge.go.set()
    assert await one == 1
    assert edge.files == {}  # the late deployment is taken back
    inventory.close()


async def test_an_older_version_landing_after_the_lease_ended_is_replaced(url: str) -> None:
    """An edge slower than the lease: another worker renews the site (renew now) and
    deploys the new version before the first one's older deployment lands over it."""
    inventory, clock, issuer, edge, site_id, one = await _held_in_deployment(url)
    clock.advance(timedelta(minutes=16))  # past the lease (15 minutes)
    assert inventory.sites.force_renewal(site_id, to_us(clock.now()))
    two = Worker(inventory, issuer, [edge], clock, WorkerConfig(owner="two"))
    assert await two.run_once() == 1
    site = inventory.sites.site(site_id)
    assert site is not None and site.current_version == 3
    edge.go.set()
    assert await one == 1  # lands version 2 over version 3
    await two.run_once()
    current = inventory.sites.current(site)
    assert current is not None
    assert edge.files[site.name][0] == current.fullchain_pem.encode()
    inventory.close()

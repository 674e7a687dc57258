"""On-demand sites that came to nothing are pruned on the worker's pass, on both databases.

A site made on demand that still has no certificate a retention period after it was
made is removed (its name is free again), and the rows of removed on-demand sites are
deleted; a site with a certificate, a recent one and one a worker holds are kept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import DesiredState, Site, SiteState, to_us
from acmekit.fleet.repos.ondemand import Admission, Limits
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer

START = datetime(2025, 3, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
LIMITS = Limits(per_domain=5, domain_window=7 * DAY_US, per_minute=50)


def admit(inventory: Inventory, name: str, now: int) -> str:
    admission, site_id = inventory.on_demand.admit(name, name.split(".", 1)[1], now, LIMITS)
    assert admission == Admission.ADDED and site_id is not None
    return site_id


def site_of(inventory: Inventory, site_id: str) -> Site:
    site = inventory.sites.site(site_id)
    assert site is not None
    return site


def rows(inventory: Inventory) -> set[str]:
    return {s.name for s in inventory.on_demand.recent(limit=100)}


async def test_the_worker_prunes_what_never_became_a_site(inventory: Inventory) -> None:
    clock = FakeClock(START)
    now = lambda: to_us(clock.now())  # noqa: E731
    issuer = LocalIssuer(now=clock.now)
    worker = Worker(inventory, issuer, [], clock, WorkerConfig(owner="w"))
    kept = admit(inventory, "kept.one.test", now())
    await worker.run_once()
    assert inventory.sites.current(site_of(inventory, kept)) is not None
    issuer.down = True  # from here on no certificate is issued
    never = admit(inventory, "never.one.test", now())
    await worker.run_once()
    dropped = admit(inventory, "dropped.two.test", now())
    inventory.sites.remove_site(dropped, now())  # the operator removed it
    await worker.run_once()

    worker.prune()  # within the retention: nothing goes
    assert rows(inventory) == {"kept.one.test", "never.one.test", "dropped.two.test"}

    clock.advance(timedelta(days=7, minutes=1))
    recent = admit(inventory, "recent.three.test", now())
    worker.prune()
    assert rows(inventory) == {"kept.one.test", "recent.three.test"}
    assert site_of(inventory, never).desired == DesiredState.REMOVED
    assert inventory.names.holder("never.one.test") is None
    assert site_of(inventory, kept).desired == DesiredState.ACTIVE
    assert site_of(inventory, recent).desired == DesiredState.ACTIVE
    names = sorted(n for _, n in inventory.on_demand.kept())
    assert names == ["kept.one.test", "recent.three.test"]

    await worker.run_once()  # the removal goes through the worker as any other
    assert site_of(inventory, never).state == SiteState.REMOVED
    # The name may come back; the rows that counted towards its domain are gone.
    assert inventory.on_demand.admit("never.one.test", "one.test", now(), LIMITS)[0] == (
        Admission.ADDED
    )

    # Not before `prune_every`: a site that went stale meanwhile waits for the next one.
    clock.advance(timedelta(days=8))
    worker.prune()
    assert site_of(inventory, recent).desired == DesiredState.REMOVED
    later = admit(inventory, "later.four.test", now() - 8 * DAY_US)  # stale already
    worker.prune()  # within prune_every of the last
    assert site_of(inventory, later).desired == DesiredState.ACTIVE
    clock.advance(timedelta(minutes=11))
    worker.prune()
    assert site_of(inventory, later).desired == DesiredState.REMOVED


def test_a_site_a_worker_holds_is_not_given_up(inventory: Inventory) -> None:
    start = to_us(START)
    held = admit(inventory, "held.one.test", start)
    idle = admit(inventory, "idle.two.test", start)
    retention = 7 * DAY_US
    now = start + retention + 1
    leased = inventory.sites.lease_due("other-worker", now, 15 * 60_000_000, 1)
    assert [s.id for s in leased] == [held]
    pruned = inventory.on_demand.prune(now, retention)
    assert (pruned.given_up, pruned.forgotten) == (1, 1)
    assert site_of(inventory, idle).desired == DesiredState.REMOVED
    assert site_of(inventory, held).desired == DesiredState.ACTIVE
    assert rows(inventory) == {"held.one.test"}
    pruned = inventory.on_demand.prune(now + 16 * 60_000_000, retention)  # lease ran out
    assert (pruned.given_up, pruned.forgotten) == (1, 1)
    assert rows(inventory) == set()
    assert inventory.on_demand.prune(now + DAY_US, retention) == type(pruned)(0, 0)

"""A removed site whose removal fails unexpectedly (an edge's client that raises before
it is awaited, a store that refuses the error's text) waits the back-off like any other
site: it is not due again at once, so the worker does not take it pass after pass with
no idle sleep between, logging the same traceback each time.

The issuer is the local test CA (testkit/acmekit_testkit/fleet_testca.py); the edge
keeps files in memory."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, Site, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class BrokenRemoval(MemoryEdge):
    """An edge whose client cannot remove: it raises when called, before any await."""

    def remove(self, site: Site) -> Awaitable[None]:  # type: ignore[override]
        raise RuntimeError(f"edge {self.name}: no removal configured")


async def test_a_failing_removal_is_not_due_again_at_once(inventory: Inventory) -> None:
    clock = FakeClock(START)
    edge = BrokenRemoval("edge")
    worker = Worker(inventory, LocalIssuer(now=clock.now), [edge], clock, WorkerConfig(owner="w"))
    (site_id,) = inventory.sites.add_sites([("a.gone.test",)], ChallengeMethod.HTTP_01, 0)
    assert await worker.run_once() == 1
    assert inventory.sites.remove_site(site_id, to_us(clock.now()))

    assert await worker.run_once() == 1  # the removal, which fails
    site = inventory.sites.site(site_id)
    assert site is not None and site.lease_owner is None
    assert site.next_action_at is not None and site.next_action_at > to_us(clock.now())
    assert await worker.run_once() == 0  # nothing due: the worker's loop sleeps

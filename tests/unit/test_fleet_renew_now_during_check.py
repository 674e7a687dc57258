""" "Renew now" asked while a worker holds the site for a renewal-information check is
not undone by that check: the renewal time the CA's window gives is not written over
the one the operator asked for, and the site is renewed once the holder lets it go.

The issuer is the local test CA (testkit/acmekit_testkit/fleet_testca.py) with renewal
information that waits until told; the edge keeps files in memory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import RenewalWindow
from acmekit.fleet.model import ChallengeMethod, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge
from acmekit_testkit.waits import until

START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class HeldWindowIssuer(LocalIssuer):
    """The local CA; once `window` is set, it is every certificate's renewal window,
    given only after `go` is set."""

    window: RenewalWindow | None = None
    go: asyncio.Event = field(default_factory=asyncio.Event)
    asked: int = 0

    async def renewal_window(self, fullchain_pem: str) -> RenewalWindow | None:
        if self.window is None:
            return None
        self.asked += 1
        await self.go.wait()
        return self.window


async def test_renew_now_during_a_check_is_not_lost(inventory: Inventory) -> None:
    clock = FakeClock(START)
    issuer = HeldWindowIssuer(now=clock.now)
    edge = MemoryEdge("edge")
    (site_id,) = inventory.sites.add_sites([("a.check.test",)], ChallengeMethod.HTTP_01, 0)
    one = Worker(inventory, issuer, [edge], clock, WorkerConfig(owner="one"))
    assert await one.run_once() == 1
    assert len(issuer.issued) == 1

    clock.advance(timedelta(hours=7))  # the next renewal-information check is due
    later = to_us(clock.now() + timedelta(days=40))
    issuer.window = RenewalWindow(later, later + 1, None)  # another time than before
    task = asyncio.create_task(one.run_once())
    await until(lambda: issuer.asked == 1)  # "one" holds the site, asking the CA
    assert inventory.sites.force_renewal(site_id, to_us(clock.now()))
    issuer.go.set()
    assert await task == 1

    await one.run_once()  # the renewal asked while "one" held the site
    assert len(issuer.issued) == 2
    site = inventory.sites.site(site_id)
    assert site is not None and site.current_version == 2

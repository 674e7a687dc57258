"""`/metrics` exports each site's certificate expiry and renewal time (the shape of
cert-manager's `certmanager_certificate_expiration_timestamp_seconds`) and the fleet's
renewal-due and failing counts, served over HTTP on 127.0.0.1 from what a worker with
the local test CA wrote to the inventory (SQLite, and PostgreSQL in its tier)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from acmekit.fleet.api import api_app
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

START = datetime(2025, 1, 1, tzinfo=UTC)
EXPIRY = "acmekit_fleet_certificate_expiration_timestamp_seconds"
RENEWAL = "acmekit_fleet_certificate_renewal_timestamp_seconds"


@pytest.fixture
def inventory(db_url: str) -> Iterator[Inventory]:
    inv = Inventory.from_url(db_url)
    yield inv
    inv.close()


@pytest.fixture
async def served(inventory: Inventory) -> AsyncIterator[tuple[str, FakeClock]]:
    clock = FakeClock(START)
    app = api_app(inventory, FleetMetrics(), lambda: to_us(clock.now()))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", clock
    await runner.cleanup()


def _samples(text: str, metric: str) -> dict[str, float]:
    """The samples of `metric`: labels (as written) -> value."""
    out = {}
    for line in text.splitlines():
        if line.startswith(metric + "{") or line.startswith(metric + " "):
            key, _, value = line.rpartition(" ")
            out[key.removeprefix(metric)] = float(value)
    return out


async def test_expiry_per_site_and_due_and_failing_counts(
    inventory: Inventory, served: tuple[str, FakeClock]
) -> None:
    url, clock = served
    issuer = LocalIssuer(now=clock.now, lifetime=timedelta(days=30))
    ids = inventory.sites.add_sites(
        [("one.metrics.test",), ("two.metrics.test", "www.two.metrics.test")],
        ChallengeMethod.HTTP_01,
        to_us(START),
    )
    worker = Worker(inventory, issuer, [MemoryEdge("edge")], clock, WorkerConfig(owner="w"))
    assert await worker.run_once() == 2
    (bad,) = inventory.sites.add_sites([("bad.metrics.test",)], ChallengeMethod.HTTP_01, 0)
    issuer.down = True  # the site's own failure, every time
    for _ in range(3):
        await worker.run_once()
        clock.advance(timedelta(hours=1))

    async with aiohttp.ClientSession() as http:
        text = await (await http.get(f"{url}/metrics")).text()
    expiry = int((START + timedelta(days=30)).timestamp())
    assert _samples(text, EXPIRY) == {
        f'{{site="{ids.ids[0]}",name="one.metrics.test"}}': expiry,
        f'{{site="{ids.ids[1]}",name="two.metrics.test"}}': expiry,
    }
    renewals = _samples(text, RENEWAL)
    assert len(renewals) == 2 and all(START.timestamp() < t < expiry for t in renewals.values())
    assert f"# TYPE {EXPIRY} gauge" in text
    assert _samples(text, "acmekit_fleet_sites_failing") == {"": 1}
    assert _samples(text, "acmekit_fleet_sites_renewal_due") == {"": 0}
    assert bad not in text  # no certificate, no expiry

    clock.advance(timedelta(days=25))  # both past their renewal time (a third left)
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(f"{url}/metrics")).text()
    assert _samples(text, "acmekit_fleet_sites_renewal_due") == {"": 2}

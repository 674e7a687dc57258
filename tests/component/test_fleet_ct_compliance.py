"""`acmekit fleet serve --ct-log-list`: `/metrics` and the status page show, per site,
whether its current certificate's embedded SCTs verify against the log list and meet the
CT policy (served over HTTP on 127.0.0.1 from what a worker wrote to the inventory)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client.ctlogs import load_log_lists
from acmekit.fleet.api import api_app
from acmekit.fleet.ctstatus import CtCompliance
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit.protocol import ct
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

START = datetime(2025, 1, 1, tzinfo=UTC)
COMPLIANT = "acmekit_fleet_certificate_ct_compliant"
VERIFIED = "acmekit_fleet_certificate_scts_verified"


@pytest.fixture
def inventory(db_url: str) -> Iterator[Inventory]:
    inv = Inventory.from_url(db_url)
    yield inv
    inv.close()


def _samples(text: str, metric: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(metric + "{") or line.startswith(metric + " "):
            key, _, value = line.rpartition(" ")
            out[key.removeprefix(metric)] = float(value)
    return out


async def test_sites_ct_compliance_in_metrics_and_status(
    inventory: Inventory, tmp_path: Path
) -> None:
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    infos = tuple(
        ct.LogInfo(f"log {i}", k.public_key(), f"http://log{i}.test/", operator=f"op{i}")
        for i, k in enumerate(keys[:2])  # the third log is in no list
    )
    listed = tmp_path / "loglist.json"
    listed.write_text(ct.LogList(infos).dumps())
    clock = FakeClock(START)
    issuer = LocalIssuer(now=clock.now, lifetime=timedelta(days=30), ct_logs=keys[:2])
    worker = Worker(inventory, issuer, [MemoryEdge("edge")], clock, WorkerConfig(owner="w"))
    (good,) = inventory.sites.add_sites([("good.ct.test",)], ChallengeMethod.HTTP_01, 0).ids
    assert await worker.run_once() == 1
    issuer.ct_logs = [keys[0], keys[2]]  # one SCT from a log the list does not know
    (short,) = inventory.sites.add_sites([("short.ct.test",)], ChallengeMethod.HTTP_01, 0).ids
    assert await worker.run_once() == 1

    compliance = CtCompliance(load_log_lists([listed]))
    app = api_app(inventory, FleetMetrics(), lambda: to_us(clock.now()), ct=compliance)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as http:
            text = await (await http.get(f"{url}/metrics")).text()
            page = await (await http.get(f"{url}/")).text()
    finally:
        await runner.cleanup()
    assert _samples(text, COMPLIANT) == {
        f'{{site="{good}",name="good.ct.test"}}': 1,
        f'{{site="{short}",name="short.ct.test"}}': 0,
    }
    assert _samples(text, VERIFIED) == {
        f'{{site="{good}",name="good.ct.test"}}': 2,
        f'{{site="{short}",name="short.ct.test"}}': 1,
    }
    assert _samples(text, "acmekit_fleet_sites_ct_noncompliant") == {"": 1}
    assert "<h2>Certificate Transparency</h2>" in page
    assert "1 of 2 sites compliant." in page
    assert "1 of 2 required SCTs from distinct logs" in page

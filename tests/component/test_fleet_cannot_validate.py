"""A fleet without a DNS API refuses sites that need dns-01, and a wildcard site that got
into the inventory anyway fails as the fleet's own fault: no order is opened at the CA,
and the CA's figures (the status page's success rate, `/metrics`) count nothing. Nor do
they count a failure of the fleet's DNS API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from acmekit.client.solvers.dns01 import Dns01Solver
from acmekit.fleet.acme import DbHttpSolver
from acmekit.fleet.api import api_app
from acmekit.fleet.cas import CaSpec
from acmekit.fleet.delegation import AcmekitDnsProvider
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod
from acmekit.fleet.status import collect
from acmekit.protocol.messages import ChallengeType
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.fleet_cas import TwoCaFleet, directory, two_ca_fleet
from acmekit_testkit.ports import free_port


@pytest.fixture
async def fleet(tmp_path: Path, dns_server: DnsServerHandle) -> AsyncIterator[TwoCaFleet]:
    async with two_ca_fleet(tmp_path, dns_server.dns_port, {"ca-one": {}}) as f:
        yield f


async def test_a_wildcard_site_fails_without_an_order_and_without_counting_at_the_ca(
    fleet: TwoCaFleet,
) -> None:
    pool = await fleet.pool([CaSpec("ca-one", directory("ca-one"))])  # http-01 only
    names = ("*.nodns.example.test", "nodns.example.test")
    site = fleet.inventory.sites.add_site(names, ChallengeMethod.HTTP_01, fleet.now())
    worker = fleet.worker(pool)
    assert await worker.run_once() == 1
    worker.flush_stats()

    failed = fleet.inventory.sites.site(site.id)
    assert failed is not None and failed.current_version == 0 and failed.failure_count == 1
    assert failed.last_problem is not None
    assert "--dns-api" in failed.last_problem["detail"]
    assert failed.order_url is None  # nothing was ordered
    assert fleet.inventory.cas.stats(0) == []
    report = collect(fleet.inventory, worker.metrics, fleet.now(), ["ca-one"])
    assert all(c.issued == 0 and c.failed == 0 for c in report.recent)
    assert fleet.inventory.cas.health(["ca-one"])["ca-one"].failures == 0


async def test_an_unreachable_dns_api_is_not_counted_against_the_ca(
    fleet: TwoCaFleet, dns_server: DnsServerHandle
) -> None:
    # The fleet's DNS API: a port where nothing listens.
    dns01 = Dns01Solver(
        AcmekitDnsProvider(f"http://127.0.0.1:{free_port()}"),
        resolver=("127.0.0.1", dns_server.dns_port),
        nameserver_port=dns_server.dns_port,
        follow_cname=True,
    )
    solvers = {
        ChallengeType.HTTP_01: DbHttpSolver(fleet.inventory, fleet.now),
        ChallengeType.DNS_01: dns01,
    }
    pool = await fleet.pool([CaSpec("ca-one", directory("ca-one"))], solvers)
    names = ("*.noapi.example.test",)
    site = fleet.inventory.sites.add_site(names, ChallengeMethod.DNS_01, fleet.now())
    worker = fleet.worker(pool)
    assert await worker.run_once() == 1
    worker.flush_stats()

    failed = fleet.inventory.sites.site(site.id)
    assert failed is not None and failed.failure_count == 1 and failed.last_problem is not None
    assert "DnsApiError" in failed.last_problem["detail"]
    assert fleet.inventory.cas.stats(0) == []
    assert fleet.inventory.cas.health(["ca-one"])["ca-one"].failures == 0


@pytest.fixture
async def api(fleet: TwoCaFleet) -> AsyncIterator[str]:
    app = api_app(fleet.inventory, FleetMetrics(), fleet.now, dns01=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"names": ["*.shop.example.test", "shop.example.test"]}, "wildcard *.shop"),
        ({"names": ["dns.example.test"], "method": "dns-01"}, "dns-01 was asked for"),
    ],
)
async def test_the_api_refuses_a_site_needing_dns01_and_says_what_to_configure(
    api: str, fleet: TwoCaFleet, body: dict[str, object], why: str
) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{api}/domains", json=body) as resp:
        assert resp.status == 422
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
    assert why in problem["detail"]
    assert "--dns-api URL" in problem["detail"] and "--dns-resolver" in problem["detail"]
    assert sum(fleet.inventory.sites.counts_by_state().values()) == 0
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api}/domains", json={"names": ["plain.example.test"]}) as resp,
    ):
        assert resp.status == 201

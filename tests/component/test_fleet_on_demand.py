"""The certificate endpoint for edges and the on-demand policy, in-process on loopback.

The endpoint answers 200 with chain and key for a site's name (and for a name under a
wildcard site), 204 otherwise, and 403 to a client outside the allowed networks or
without the token. A name no site has goes to the on-demand policy: patterns, the
operator's ask URL (a real HTTP server on loopback), and the limits per registered
domain and per minute, which the inventory counts on both databases.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.clock import SystemClock
from acmekit.fleet.certapi import CertEndpoint, cert_app
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, to_us
from acmekit.fleet.ondemand import OnDemand, OnDemandPolicy, Verdict
from acmekit.fleet.repos.ondemand import Admission, Limits
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer

START = datetime(2025, 1, 1, tzinfo=UTC)
MINUTE = 60_000_000


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _ask(http: aiohttp.ClientSession, url: str, name: str) -> tuple[int, str]:
    async with http.get(f"{url}/certificate", params={"server_name": name, "token": "t"}) as r:
        return r.status, await r.text()


def test_limits_per_registered_domain_and_per_minute(inventory: Inventory) -> None:
    now = to_us(START)
    limits = Limits(per_domain=2, domain_window=7 * 24 * 60 * MINUTE, per_minute=3)
    admit = inventory.on_demand.admit
    assert admit("a.one.test", "one.test", now, limits)[0] == Admission.ADDED
    assert admit("b.one.test", "one.test", now, limits)[0] == Admission.ADDED
    assert admit("c.one.test", "one.test", now, limits)[0] == Admission.DOMAIN_LIMIT
    assert admit("a.two.test", "two.test", now, limits)[0] == Admission.ADDED
    assert admit("b.two.test", "two.test", now, limits)[0] == Admission.RATE_LIMIT
    later = now + MINUTE + 1
    assert admit("b.two.test", "two.test", later, limits)[0] == Admission.ADDED
    assert admit("a.two.test", "two.test", later, limits)[0] == Admission.TAKEN
    assert admit("c.one.test", "one.test", later, limits)[0] == Admission.DOMAIN_LIMIT
    assert inventory.on_demand.count() == 4
    assert inventory.on_demand.recent()[0].name == "b.two.test"  # newest first
    site_id = inventory.names.holder("a.one.test")
    assert site_id is not None
    inventory.sites.remove_site(site_id, later)
    assert inventory.on_demand.count() == 3
    assert (site_id, "a.one.test") not in inventory.on_demand.kept()


@pytest.fixture
async def ask_server() -> AsyncIterator[tuple[str, list[str]]]:
    """The operator's ask URL: yes for names starting `yes`, and every question noted."""
    asked: list[str] = []

    async def ask(request: web.Request) -> web.Response:
        asked.append(request.query["domain"])
        return web.Response(status=200 if request.query["domain"].startswith("yes") else 403)

    app = web.Application()
    app.router.add_get("/ask", ask)
    runner, url = await _serve(app)
    yield f"{url}/ask", asked
    await runner.cleanup()


async def test_the_endpoint_serves_sites_and_sends_unknown_names_to_the_policy(
    tmp_path: Path, ask_server: tuple[str, list[str]]
) -> None:
    ask_url, asked = ask_server
    clock = FakeClock(START)
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    now = lambda: to_us(clock.now())  # noqa: E731
    inventory.sites.add_site(["shop.example.test"], ChallengeMethod.HTTP_01, now())
    inventory.sites.add_site(["*.cdn.example.test"], ChallengeMethod.DNS_01, now())
    issuer = LocalIssuer(now=clock.now)
    worker = Worker(inventory, issuer, [], clock, WorkerConfig(owner="w"))
    await worker.run_once()

    policy = OnDemandPolicy(patterns=("*.example.test",), ask=ask_url, per_domain=5)
    on_demand = OnDemand(inventory, policy, now)
    endpoint = CertEndpoint(inventory, on_demand, token="t")
    runner, url = await _serve(cert_app(endpoint))
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await _ask(http, url, "SHOP.example.test")
            assert status == 200
            chain = x509.load_pem_x509_certificates(body.encode())
            key = serialization.load_pem_private_key(body.encode(), None)
            assert chain[0].public_key() == key.public_key()
            san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert san.value.get_values_for_type(x509.DNSName) == ["shop.example.test"]

            status, body = await _ask(http, url, "img.cdn.example.test")
            assert status == 200
            san = x509.load_pem_x509_certificates(body.encode())[0].extensions
            names = san.get_extension_for_class(x509.SubjectAlternativeName).value
            assert names.get_values_for_type(x509.DNSName) == ["*.cdn.example.test"]

            async with http.get(
                f"{url}/certificate", params={"server_name": "shop.example.test"}
            ) as r:
                assert r.status == 403  # no token
            for name in ("yes.example.test", "no.example.test", "yes.other.test", "../x"):
                assert (await _ask(http, url, name))[0] == 204
            await on_demand.settle()
            assert (await _ask(http, url, "no.example.test"))[0] == 204
            await on_demand.settle()
    finally:
        await runner.cleanup()
        await on_demand.close()
    # Only names inside the patterns reach the ask URL, and a refusal is remembered.
    assert asked == ["yes.example.test", "no.example.test"]
    assert on_demand.verdicts[Verdict.ADDED] == 1
    assert on_demand.verdicts[Verdict.ASK_REFUSED] == 1
    assert on_demand.verdicts[Verdict.NOT_ALLOWED] == 1  # yes.other.test; ../x is no host name
    assert inventory.names.holder("yes.example.test") is not None
    assert inventory.names.holder("no.example.test") is None
    assert inventory.names.holder("yes.other.test") is None
    assert [s.name for s in inventory.on_demand.recent()] == ["yes.example.test"]
    inventory.close()


async def test_a_client_outside_the_allowed_networks_is_refused(tmp_path: Path) -> None:
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    endpoint = CertEndpoint(inventory, allow=[ipaddress.ip_network("10.0.0.0/8")])
    runner, url = await _serve(cert_app(endpoint))
    try:
        async with aiohttp.ClientSession() as http:
            assert (await _ask(http, url, "shop.example.test"))[0] == 403
    finally:
        await runner.cleanup()
        inventory.close()
    assert endpoint.answers["refused"] == 1


def test_patterns_match_a_name_or_the_names_under_it() -> None:
    policy = OnDemandPolicy(patterns=("*.shop.test", "exact.test"))
    assert policy.matches("a.shop.test") and policy.matches("a.b.shop.test")
    assert policy.matches("exact.test")
    for name in ("shop.test", "evilshop.test", "x.exact.test", "a.shop.test.evil"):
        assert not policy.matches(name), name
    with pytest.raises(ValueError):
        OnDemandPolicy()
    with pytest.raises(ValueError):
        OnDemandPolicy(patterns=("not a name",))


async def test_an_added_site_wakes_the_idle_worker(tmp_path: Path) -> None:
    """The worker idles for an hour between empty passes; an on-demand site is issued
    anyway, because adding it wakes the worker of the same process."""
    clock = SystemClock()
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    worker = Worker(
        inventory, LocalIssuer(now=clock.now), [], clock,
        WorkerConfig(owner="w", idle_sleep=3600),
    )  # fmt: skip
    now = lambda: to_us(clock.now())  # noqa: E731
    policy = OnDemandPolicy(patterns=("*.example.test",))
    on_demand = OnDemand(inventory, policy, now, worker.wake)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0)  # the worker's first pass finds nothing and idles
        assert await on_demand.decide("new.example.test") == Verdict.ADDED
        site_id = inventory.names.holder("new.example.test")
        assert site_id is not None

        for _ in range(1200):  # 60 s at most; an hour's idle sleep would fail it
            site = inventory.sites.site(site_id)
            if site is not None and site.current_version > 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the worker never issued the on-demand site")
    finally:
        stop.set()
        worker.wake()
        await asyncio.wait_for(running, timeout=30)
        await on_demand.close()
        inventory.close()


def test_admissions_at_once_keep_to_the_limit(inventory: Inventory) -> None:
    """Twelve names of one registered domain admitted from twelve threads at once (each
    its own connection): exactly the limit become sites."""
    now = to_us(START)
    limits = Limits(per_domain=3, domain_window=7 * 24 * 60 * MINUTE, per_minute=100)
    names = [f"n{i}.race.test" for i in range(12)]
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        found = list(
            pool.map(lambda n: inventory.on_demand.admit(n, "race.test", now, limits)[0], names)
        )
    assert found.count(Admission.ADDED) == 3
    assert found.count(Admission.DOMAIN_LIMIT) == 9
    assert inventory.on_demand.count() == 3

"""The loopback HTTP APIs (`acmekit dns`'s and `acmekit fleet`'s) against a web page in
the host's browser, on real sockets: a change asked from another origin (a form, or a
`text/plain` fetch that needs no preflight) is refused, a Host that is not loopback (DNS
rebinding) is refused, the fleet API takes a bearer token and refuses to listen beyond
loopback without one; what the programs on the host send still works."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import dns.name
import dns.rdatatype
import pytest
from aiohttp import web

from acmekit.dns.api import make_api
from acmekit.dns.registry import Registry
from acmekit.dns.store import RecordStore, parse_name
from acmekit.fleet.api import api_app
from acmekit.fleet.cas import CaSpec
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import to_us
from acmekit.fleet.service import FleetConfig

START = datetime(2025, 1, 1, tzinfo=UTC)
TXT = '{"host": "_acme-challenge.a.guard.test.", "value": "v"}'


async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
def store() -> RecordStore:
    return RecordStore(["guard.test"])


@pytest.fixture
async def dns_api(store: RecordStore) -> AsyncIterator[str]:
    async for url in _serve(make_api(store, Registry(dns.name.from_text("auth.guard.test")))):
        yield url


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[Inventory, str]]:
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    async for url in _serve(api_app(inventory, FleetMetrics(), lambda: to_us(START))):
        yield inventory, url
    inventory.close()


@pytest.fixture
async def fleet_with_token(tmp_path: Path) -> AsyncIterator[str]:
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    app = api_app(inventory, FleetMetrics(), lambda: to_us(START), token="s3cret")
    async for url in _serve(app):
        yield url
    inventory.close()


def _txt(store: RecordStore) -> list[str]:
    name = parse_name("_acme-challenge.a.guard.test")
    return [rd.to_text() for rd in store.rdatas(name, dns.rdatatype.TXT)]


async def test_a_page_cannot_publish_a_txt_record_cross_site(
    dns_api: str, store: RecordStore
) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in (
            {"Origin": "http://evil.test", "Content-Type": "text/plain"},
            {"Origin": "null", "Content-Type": "text/plain"},
            {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
        ):
            async with http.post(f"{dns_api}/set-txt", data=TXT, headers=headers) as resp:
                assert resp.status == 403, headers
        assert _txt(store) == []
        same = {"Origin": dns_api, "Content-Type": "application/json"}
        async with http.post(f"{dns_api}/set-txt", data=TXT, headers=same) as resp:
            assert resp.status == 200
        assert _txt(store) == ['"v"']


async def test_a_rebound_name_gets_no_answer_from_the_dns_api(
    dns_api: str, store: RecordStore
) -> None:
    port = dns_api.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as http:
        rebound = {"Host": f"rebind.evil.test:{port}", "Origin": f"http://rebind.evil.test:{port}"}
        async with http.post(f"{dns_api}/set-txt", data=TXT, headers=rebound) as resp:
            assert resp.status == 421
        async with http.get(f"{dns_api}/secondaries", headers=rebound) as resp:
            assert resp.status == 421
        assert _txt(store) == []
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            async with http.get(f"{dns_api}/health", headers={"Host": host}) as resp:
                assert resp.status == 200


async def test_a_page_cannot_add_a_site_to_the_fleet(fleet: tuple[Inventory, str]) -> None:
    _, url = fleet
    port = url.rsplit(":", 1)[1]
    body = '{"names": ["victim.guard.test"]}'
    async with aiohttp.ClientSession() as http:
        cross = {"Origin": "http://evil.test", "Content-Type": "text/plain"}
        async with http.post(f"{url}/domains", data=body, headers=cross) as resp:
            assert resp.status == 403
        rebound = {"Host": f"evil.test:{port}"}
        async with http.post(f"{url}/domains", data=body, headers=rebound) as resp:
            assert resp.status == 421
        async with http.get(f"{url}/status", headers=rebound) as resp:
            assert resp.status == 421  # the status page lists every site
        async with http.get(f"{url}/domains") as resp:
            assert (await resp.json())["domains"] == []
        # the http-01 responder answers under any name (edges forward it)
        async with http.get(f"{url}/.well-known/acme-challenge/x", headers=rebound) as resp:
            assert resp.status == 404
        async with http.post(f"{url}/domains", json={"names": ["ok.guard.test"]}) as resp:
            assert resp.status == 201


async def test_the_fleet_api_takes_a_token(fleet_with_token: str) -> None:
    url = fleet_with_token
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/domains") as resp:
            assert resp.status == 401
        wrong = {"Authorization": "Bearer nope"}
        async with http.post(
            f"{url}/domains", json={"names": ["t.guard.test"]}, headers=wrong
        ) as resp:
            assert resp.status == 401
        good = {"Authorization": "Bearer s3cret", "Host": "fleet.internal:8080"}
        async with http.post(
            f"{url}/domains", json={"names": ["t.guard.test"]}, headers=good
        ) as resp:
            assert resp.status == 201  # with a token, any name may be used
        async with http.get(f"{url}/.well-known/acme-challenge/x") as resp:
            assert resp.status == 404  # the CA, through edges, has no token


def test_the_fleet_refuses_an_open_api_beyond_loopback() -> None:
    ca = [CaSpec("ca", "https://127.0.0.1:1/directory")]
    with pytest.raises(ValueError, match="needs an API token"):
        FleetConfig(db="sqlite://", cas=ca, listen=("0.0.0.0", 8080))
    FleetConfig(db="sqlite://", cas=ca, listen=("0.0.0.0", 8080), api_token="t")
    FleetConfig(db="sqlite://", cas=ca, listen=("127.0.0.1", 8080))


async def test_a_rebound_name_gets_no_key_from_the_certificate_endpoint(tmp_path: Path) -> None:
    """The endpoint serves a site's key to loopback clients without a token; a page in
    the host's browser, rebound to loopback, asks under its own name and is refused.
    An edge asking at an IP address, or with the token, still gets its answer."""
    from acmekit.fleet.certapi import CertEndpoint, cert_app

    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        open_endpoint = CertEndpoint(inventory)
        with_token = CertEndpoint(inventory, token="t0k")
        async for url in _serve(cert_app(open_endpoint)):
            port = url.rsplit(":", 1)[1]
            async with aiohttp.ClientSession() as http:
                query = {"server_name": "shop.guard.test"}
                rebound = {"Host": f"rebind.evil.test:{port}"}
                async with http.get(f"{url}/certificate", params=query, headers=rebound) as r:
                    assert r.status == 421
                async with http.get(f"{url}/certificate", params=query) as r:
                    assert r.status == 204  # asked at 127.0.0.1: answered (no such site)
        async for url in _serve(cert_app(with_token)):
            async with aiohttp.ClientSession() as http:
                query = {"server_name": "shop.guard.test", "token": "t0k"}
                named = {"Host": "fleet.internal:8443"}
                async with http.get(f"{url}/certificate", params=query, headers=named) as r:
                    assert r.status == 204
    finally:
        inventory.close()

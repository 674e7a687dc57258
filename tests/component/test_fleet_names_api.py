"""The API on loopback keeps a name to one site: adding a taken name answers 409 with a
problem document naming the name and the site that holds it; a removed site frees its
names. It refuses, with 400, `names` that is not a list of strings and a `limit` below 1.
A worker removing a site leaves alone the edge directory that a site added since with
the same first name now owns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from acmekit.fleet.api import api_app
from acmekit.fleet.deploy import DirectoryDeployer
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod, SiteState, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer

START = datetime(2025, 1, 1, tzinfo=UTC)
SHOP = ["shop.example.test", "www.shop.example.test"]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    runner = web.AppRunner(api_app(inventory, FleetMetrics(), lambda: to_us(START)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        yield http, f"http://127.0.0.1:{port}"
    await runner.cleanup()
    inventory.close()


async def _post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(f"{url}/domains", json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_taken_name_answers_409_naming_the_name_and_its_site(
    api: tuple[aiohttp.ClientSession, str],
) -> None:
    http, url = api
    status, shop = await _post(http, url, {"names": SHOP})
    assert status == 201
    for names, taken in (
        (["shop.example.test"], "shop.example.test"),
        (["SHOP.example.test"], "shop.example.test"),
        (["other.example.test", "WWW.Shop.Example.Test."], "www.shop.example.test"),
    ):
        async with http.post(f"{url}/domains", json={"names": names}) as resp:
            assert resp.status == 409
            assert resp.content_type == "application/problem+json"
            doc = await resp.json(content_type=None)
        assert doc["name"] == taken and doc["site_id"] == shop["id"]
        assert doc["detail"] == f"{taken} already belongs to site {shop['id']}"
    async with http.get(f"{url}/domains") as resp:
        assert [d["id"] for d in (await resp.json())["domains"]] == [shop["id"]]

    assert (await http.delete(f"{url}/domains/{shop['id']}")).status == 202
    status, again = await _post(http, url, {"names": ["shop.example.test"]})
    assert status == 201 and again["id"] != shop["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"names": "x.test"},
        {"names": {"x.test": True}},
        {"names": ["x.test", 7]},
        {"names": None},
        {},
        ["x.test"],
        "x.test",
    ],
)
async def test_names_must_be_a_list_of_strings(
    api: tuple[aiohttp.ClientSession, str], body: Any
) -> None:
    http, url = api
    status, doc = await _post(http, url, body)
    assert status == 400 and doc["status"] == 400
    async with http.get(f"{url}/domains") as resp:
        assert (await resp.json())["domains"] == []


async def test_deeply_nested_json_is_a_400(api: tuple[aiohttp.ClientSession, str]) -> None:
    http, url = api
    body = b'{"names": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    headers = {"Content-Type": "application/json"}
    async with http.post(f"{url}/domains", data=body, headers=headers) as resp:
        assert resp.status == 400


@pytest.mark.parametrize("limit", ["-1", "0", "ten"])
async def test_a_limit_below_one_is_refused(
    api: tuple[aiohttp.ClientSession, str], limit: str
) -> None:
    http, url = api
    async with http.get(f"{url}/domains", params={"limit": limit}) as resp:
        assert resp.status == 400 and resp.content_type == "application/problem+json"


async def test_pages_of_one(api: tuple[aiohttp.ClientSession, str]) -> None:
    http, url = api
    for name in ("a.example.test", "b.example.test"):
        assert (await _post(http, url, {"names": [name]}))[0] == 201
    async with http.get(f"{url}/domains", params={"limit": "1"}) as resp:
        page = await resp.json()
    assert len(page["domains"]) == 1 and page["next"] == page["domains"][0]["id"]
    async with http.get(f"{url}/domains", params={"limit": "1", "after": page["next"]}) as resp:
        assert len((await resp.json())["domains"]) == 1


async def test_removing_a_site_spares_the_directory_of_its_successor(tmp_path: Path) -> None:
    clock = FakeClock(START)
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    edge, other = DirectoryDeployer(tmp_path / "edge"), DirectoryDeployer(tmp_path / "other")
    worker = Worker(inventory, LocalIssuer(now=clock.now), [edge, other], clock,
                    WorkerConfig(owner="w"))  # fmt: skip
    now = to_us(START)
    old = inventory.sites.add_site(("shop.example.test",), ChallengeMethod.HTTP_01, now)
    gone = inventory.sites.add_site(("gone.example.test",), ChallengeMethod.HTTP_01, now)
    assert await worker.run_once() == 2
    assert (tmp_path / "edge" / "gone.example.test" / "fullchain.pem").exists()
    inventory.sites.remove_site(old.id, now + 2)
    inventory.sites.remove_site(gone.id, now + 2)
    new = inventory.sites.add_site(("shop.example.test",), ChallengeMethod.HTTP_01, now + 1)
    leased = inventory.sites.lease_due("w", now + 2, 10**9, 10)
    assert {s.id for s in leased} == {new.id, old.id, gone.id}
    for site in sorted(leased, key=lambda s: s.id != new.id):  # the new one deploys first
        await worker.handle(site)
    chain = (tmp_path / "edge" / "shop.example.test" / "fullchain.pem").read_text()
    current = inventory.sites.current(inventory.sites.site(new.id) or new)
    assert current is not None and chain == current.fullchain_pem
    assert (tmp_path / "other" / "shop.example.test" / "privkey.pem").exists()
    assert not (tmp_path / "edge" / "gone.example.test").exists()
    assert {s.state for s in inventory.sites.page()} == {SiteState.ACTIVE, SiteState.REMOVED}
    assert inventory.sites.deployments(old.id)[edge.name].version == 0
    inventory.close()


async def _two_sites(http: aiohttp.ClientSession, url: str) -> None:
    for name in ("a.example.test", "b.example.test"):
        async with http.post(f"{url}/domains", json={"names": [name]}) as resp:
            assert resp.status < 300


# `int()` read U+0661 (ARABIC-INDIC DIGIT ONE) as 1, and a sign, spaces or underscores as
# a number too: the list's `limit` is ASCII digits.
@pytest.mark.parametrize("limit", ["\u0661", "+1", " 1", "0_1"])
async def test_a_limit_of_other_than_ascii_digits_is_refused(
    api: tuple[aiohttp.ClientSession, str], limit: str
) -> None:
    http, url = api
    await _two_sites(http, url)
    async with http.get(f"{url}/domains", params={"limit": limit}) as resp:
        assert resp.status == 400 and resp.content_type == "application/problem+json"


@pytest.mark.parametrize(("limit", "count"), [("1", 1), ("100", 2), ("0001", 1)])
async def test_a_limit_of_ascii_digits_is_read(
    api: tuple[aiohttp.ClientSession, str], limit: str, count: int
) -> None:
    http, url = api
    await _two_sites(http, url)
    async with http.get(f"{url}/domains", params={"limit": limit}) as resp:
        assert resp.status == 200
        assert len((await resp.json())["domains"]) == count

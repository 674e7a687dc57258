"""`/metrics` costs the same whatever the number of sites: the statements it sends to the
inventory are as many for 10 sites as for 1,000 and 2,000 (counts and the earliest
expiry are the database's work), its exposition stops growing once the fleet has more
sites than it names (`SOONEST`), and its database work (and the status page's and
`GET /domains`') runs off the event loop that also serves the http-01 responder. A page
of `GET /domains` takes as many statements for 1,000 sites as for 10. Served over HTTP
on 127.0.0.1, on SQLite and PostgreSQL in its tier."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from acmekit.fleet.api import api_app
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import SOONEST, FleetMetrics
from acmekit.fleet.model import ChallengeMethod, SiteState
from acmekit.fleet.planner import DAY, HOUR
from acmekit.fleet.schema import certificates, deployments, on_demand, sites
from acmekit_testkit.sqlcount import SqlCount, counting

NOW = 1_750_000_000 * 1_000_000  # microseconds


@pytest.fixture
def counted(db_url: str) -> Iterator[tuple[Inventory, SqlCount]]:
    with counting() as count:  # before the inventory: its connections are counted
        inv = Inventory.from_url(db_url)
        yield inv, count
        inv.close()


@pytest.fixture
async def url(counted: tuple[Inventory, SqlCount]) -> AsyncIterator[str]:
    app = api_app(counted[0], FleetMetrics(), lambda: NOW, cas=["le", "zs"])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def _grow(inventory: Inventory, have: int, to: int) -> None:
    """Sites `have` to `to`, each with a current certificate (the k-th expiring k+1
    hours from now, from CA "le" or "zs" in turn) and made on demand; one in ten
    failing."""
    ks = range(have, to)
    ids = inventory.sites.add_sites(
        [(f"s{k:05d}.bounded.test",) for k in ks], ChallengeMethod.HTTP_01, NOW
    ).ids
    certs = [
        {"site_id": i, "version": 1, "serial": f"{k:x}", "not_before": NOW,
         "not_after": NOW + (k + 1) * HOUR, "fullchain_pem": "-", "key_pem": "-",
         "issued": NOW, "ca": "le" if k % 2 else "zs"}
        for k, i in zip(ks, ids, strict=True)
    ]  # fmt: skip
    made = [
        {"site_id": i, "name": f"s{k:05d}.bounded.test", "domain": "bounded.test", "created": k}
        for k, i in zip(ks, ids, strict=True)
    ]
    failing = [i for k, i in zip(ks, ids, strict=True) if k % 10 == 0]
    with inventory.engine.begin() as c:
        c.execute(certificates.insert(), certs)
        c.execute(on_demand.insert(), made)
        c.execute(
            sites.update()
            .where(sites.c.id.in_(ids))
            .values(current_version=1, renew_at=NOW + DAY, state=SiteState.ACTIVE)
        )
        c.execute(sites.update().where(sites.c.id.in_(failing)).values(state=SiteState.FAILING))


async def _scrape(url: str, count: SqlCount) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        await (await http.get(f"{url}/metrics")).text()  # the pool's connections made
        mark = count.mark()
        text = await (await http.get(f"{url}/metrics")).text()
    return count.since(mark)[0], text


def _samples(text: str, metric: str) -> dict[str, str]:
    return {
        line.removeprefix(metric).rpartition(" ")[0]: line.rpartition(" ")[2]
        for line in text.splitlines()
        if line.startswith(metric + "{") or line.startswith(metric + " ")
    }


async def test_statements_and_size_do_not_grow_with_the_sites(
    counted: tuple[Inventory, SqlCount], url: str
) -> None:
    inventory, count = counted
    found = {}
    have = 0
    for n in (10, 1000, 2000):
        _grow(inventory, have, n)
        have = n
        found[n] = await _scrape(url, count)
    statements = {n: s for n, (s, _) in found.items()}
    assert statements[10] == statements[1000] == statements[2000], statements
    lines = {n: len(text.splitlines()) for n, (_, text) in found.items()}
    assert lines[1000] == lines[2000] < lines[10] + 3 * SOONEST, lines
    assert len(found[2000][1]) < len(found[10][1]) + 3 * SOONEST * 120

    text = found[2000][1]
    expiry = _samples(text, "acmekit_fleet_certificate_expiration_timestamp_seconds")
    assert len(expiry) == SOONEST
    assert {k.split('name="')[1][:6] for k in expiry} == {f"s{k:05d}" for k in range(SOONEST)}
    assert _samples(text, "acmekit_fleet_certificates") == {
        '{ca="le"}': "1000",
        '{ca="zs"}': "1000",
    }
    # notAfter within a day: k + 1 <= 24, so k 0..23, twelve from each CA.
    expiring = _samples(text, "acmekit_fleet_certificates_expiring")
    assert expiring['{ca="le",within="1d"}'] == expiring['{ca="zs",within="1d"}'] == "12"
    assert expiring['{ca="zs",within="30d"}'] == "360"
    earliest = _samples(text, "acmekit_fleet_certificate_expiration_earliest_timestamp_seconds")
    assert earliest == {
        '{ca="zs"}': str((NOW + HOUR) // 1_000_000),
        '{ca="le"}': str((NOW + 2 * HOUR) // 1_000_000),
    }
    assert _samples(text, "acmekit_fleet_sites_failing") == {"": "200"}
    assert _samples(text, 'acmekit_fleet_sites{state="active"}') == {"": "1800"}
    assert _samples(text, "acmekit_fleet_on_demand_sites") == {"": "2000"}
    assert len(_samples(text, "acmekit_fleet_on_demand_site_info")) == SOONEST


@pytest.mark.parametrize("path", ["/metrics", "/status", "/domains?limit=5"])
async def test_the_database_work_runs_off_the_event_loop(
    counted: tuple[Inventory, SqlCount], url: str, path: str
) -> None:
    inventory = counted[0]
    _grow(inventory, 0, 10)
    threads: set[int] = set()

    def seen(*_: Any) -> None:
        threads.add(threading.get_ident())

    sa.event.listen(inventory.engine, "before_cursor_execute", seen)
    try:
        async with aiohttp.ClientSession() as http:
            assert (await http.get(f"{url}{path}")).status == 200
    finally:
        sa.event.remove(inventory.engine, "before_cursor_execute", seen)
    assert threads and threading.get_ident() not in threads


async def test_a_page_of_domains_takes_as_many_statements_for_1000_sites_as_for_10(
    counted: tuple[Inventory, SqlCount], url: str
) -> None:
    inventory, count = counted
    _grow(inventory, 0, 1000)
    with inventory.engine.begin() as c:  # a deployment and a backup per site, too
        c.execute(
            deployments.insert(),
            [{"site_id": s.id, "edge": "e", "version": 1, "updated": NOW, "failure_count": 0}
             for s in inventory.sites.page(limit=1000)],
        )  # fmt: skip
    statements = {}
    async with aiohttp.ClientSession() as http:
        await http.get(f"{url}/domains?limit=10")  # the pool's connections made
        for n in (10, 1000):
            mark = count.mark()
            found = await (await http.get(f"{url}/domains?limit={n}")).json()
            statements[n] = count.since(mark)[0]
            assert len(found["domains"]) == n
    assert statements[10] == statements[1000] <= 8, statements
    first = found["domains"][0]
    assert first["certificate"]["not_after"] is not None and first["certificate"]["ca"] in (
        "le",
        "zs",
    )
    assert first["deployments"]["e"]["version"] == 1 and first["deployments"]["e"]["error"] is None
    assert first["backup"] is None and first["options"]["backup"] is False


async def test_an_inventory_in_memory_is_read_on_the_loop() -> None:
    """In-memory SQLite is one database per thread: a thread would read an empty one."""
    inventory = Inventory.from_url("sqlite://")
    _grow(inventory, 0, 3)
    app = api_app(inventory, FleetMetrics(), lambda: NOW)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as http:
            text = await (await http.get(f"{url}/metrics")).text()
            page = await (await http.get(f"{url}/domains")).json()
    finally:
        await runner.cleanup()
        inventory.close()
    assert _samples(text, "acmekit_fleet_on_demand_sites") == {"": "3"}
    assert len(page["domains"]) == 3

"""The fleet's status page and /metrics show the DNS API's secondaries, on loopback.

A real `acmekit dns` primary (with an API token) is given two secondaries with
`--notify`: another `acmekit dns` serving the same zone on its own, whose serial falls
behind as records are set at the primary, and a port where nothing answers. The fleet's
API (served on loopback) asks the primary's `GET /secondaries` and shows each one's
serial and lag; a wrong token or a closed port shows as a DNS API that could not be
asked; `acmekit fleet serve --dns-api` does the same as a process. (The BIND
secondaries in step are in tests/interop/test_dns_secondaries.py.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import dns.message
import dns.query
import dns.rdatatype
from aiohttp import web

from acmekit.fleet.api import api_app
from acmekit.fleet.dnssecondaries import DnsSecondaries, serial_lag
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.fleet_serve import fleet_serve_process
from acmekit_testkit.ports import free_port, free_tcp_udp_port

ZONE = "sec.test"
TOKEN = "secondaries-token"


def soa_serial(handle: DnsServerHandle) -> int:
    query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
    reply = dns.query.udp(query, "127.0.0.1", port=handle.dns_port, timeout=2)
    return int(reply.answer[0][0].serial)


@contextmanager
def primary_and_secondary(tmp_path: Path) -> Iterator[tuple[DnsServerHandle, DnsServerHandle, int]]:
    """(the primary, an `acmekit dns` secondary that does not follow it, a silent port)."""
    silent = free_tcp_udp_port()
    with dns_server_process(tmp_path, "--zone", ZONE, default_ipv4=None) as secondary:
        notify = ["--notify", f"127.0.0.1:{secondary.dns_port}", "--notify", f"127.0.0.1:{silent}"]
        with dns_server_process(
            tmp_path, "--zone", ZONE, *notify, default_ipv4=None, api_token=TOKEN
        ) as primary:
            yield primary, secondary, silent


async def fleet_pages(tmp_path: Path, secondaries: DnsSecondaries) -> tuple[str, str]:
    """(/metrics, the status page) of a fleet API on loopback that asks `secondaries`."""
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    app = api_app(inventory, FleetMetrics(), lambda: 0, dns_secondaries=secondaries)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/metrics") as resp:
                metrics = await resp.text()
            async with http.get(url + "/status") as resp:
                page = await resp.text()
    finally:
        await runner.cleanup()
        await secondaries.close()
        inventory.close()
    return metrics, page


def gauge(metrics: str, name: str, secondary: str) -> str | None:
    found = re.search(rf'^{name}{{secondary="{secondary}",zone="{ZONE}."}} (\S+)$', metrics, re.M)
    return None if found is None else found.group(1)


async def test_the_fleet_shows_each_secondary_behind_or_silent(tmp_path: Path) -> None:
    with primary_and_secondary(tmp_path) as (primary, secondary, silent):
        for i in range(3):  # the primary moves on; the other server does not follow
            await primary.set_txt(f"_acme-challenge.n{i}.{ZONE}.", f"value-{i}")
        primary_serial, secondary_serial = soa_serial(primary), soa_serial(secondary)
        metrics, page = await fleet_pages(tmp_path, DnsSecondaries(primary.api_url, TOKEN))
    lag = serial_lag(primary_serial, secondary_serial)
    assert lag >= 3
    follower, gone = f"127.0.0.1:{secondary.dns_port}", f"127.0.0.1:{silent}"
    assert "acmekit_dns_api_up 1" in metrics.splitlines()
    assert f"acmekit_dns_primary_serial {primary_serial}" in metrics.splitlines()
    assert gauge(metrics, "acmekit_dns_secondary_up", follower) == "1"
    assert gauge(metrics, "acmekit_dns_secondary_serial", follower) == str(secondary_serial)
    assert gauge(metrics, "acmekit_dns_secondary_serial_lag", follower) == str(lag)
    assert gauge(metrics, "acmekit_dns_secondary_in_step", follower) == "0"
    assert gauge(metrics, "acmekit_dns_secondary_up", gone) == "0"
    assert gauge(metrics, "acmekit_dns_secondary_in_step", gone) == "0"
    assert gauge(metrics, "acmekit_dns_secondary_serial_lag", gone) is None  # no serial
    assert "DNS secondaries (0 of 2 in step)" in page
    table = page.split('id="dns-secondaries"', 1)[1].split("</table>", 1)[0]
    assert follower in table and gone in table
    assert f"behind by {lag}" in table and "not answering" in table
    assert f'<td class="n">{secondary_serial}</td>' in table


async def test_a_dns_api_that_cannot_be_asked_shows_as_down(tmp_path: Path) -> None:
    with primary_and_secondary(tmp_path) as (primary, _secondary, _silent):
        wrong = DnsSecondaries(primary.api_url, "not-the-token")
        (tmp_path / "wrong").mkdir()
        metrics, page = await fleet_pages(tmp_path / "wrong", wrong)
    assert "acmekit_dns_api_up 0" in metrics.splitlines()
    assert "acmekit_dns_secondary_up{" not in metrics
    assert "could not be asked: HTTP 403" in page  # the DNS API refuses the token

    closed = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "closed").mkdir()
    metrics, page = await fleet_pages(tmp_path / "closed", DnsSecondaries(closed, timeout=2))
    assert "acmekit_dns_api_up 0" in metrics.splitlines()
    assert f"The DNS API {closed} could not be asked: ClientConnectorError" in page


def test_fleet_serve_with_a_dns_api_shows_its_secondaries(tmp_path: Path) -> None:
    with primary_and_secondary(tmp_path) as (primary, secondary, silent):
        args = ["--server", "https://127.0.0.1:9/directory"]  # never reached: nothing is due
        args += ["--dns-api", primary.api_url, "--dns-api-token", TOKEN]
        args += ["--dns-resolver", primary.resolver]
        with fleet_serve_process(tmp_path, http01_port=free_port(), edges=[], args=args) as fleet:
            metrics = fleet.get_text("/metrics")
            page = fleet.get_text("/")
        primary_serial = soa_serial(primary)
    follower, gone = f"127.0.0.1:{secondary.dns_port}", f"127.0.0.1:{silent}"
    assert "acmekit_dns_api_up 1" in metrics.splitlines()
    assert f"acmekit_dns_primary_serial {primary_serial}" in metrics.splitlines()
    assert gauge(metrics, "acmekit_dns_secondary_up", follower) == "1"
    assert gauge(metrics, "acmekit_dns_secondary_up", gone) == "0"
    assert 'id="dns-secondaries"' in page and follower in page and "not answering" in page

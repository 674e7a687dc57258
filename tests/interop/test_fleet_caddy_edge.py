"""Debian's Caddy as a fleet edge: it asks `acmekit fleet serve` for every certificate
during the handshake (`tls { get_certificate http URL }`), with a token in the URL, and
forwards the CA's http-01 validations on its plain-HTTP port to the fleet's responder.

Checked from outside with TLS handshakes (Python's ssl and `openssl s_client`) against
Caddy on loopback: a site added through the API is served with the fleet's certificate,
and its renewed certificate from the next handshake on, with the same Caddy process; a
name matching `--on-demand` is refused at first, then served with a certificate of its
own; a name outside the patterns never becomes a site; names beyond the limit for their
registered domain are not issued.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.caddy import CaddyEdge, openssl_subject, running_caddy_edge, served_serial
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.fleet_serve import FleetProcess, fleet_serve_process
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop

TOKEN = "edge-token-7f3a"
PER_DOMAIN = 2  # on-demand sites per registered domain


@dataclass(frozen=True)
class CaddyFleet:
    ca: ServerHandle
    fleet: FleetProcess
    edge: CaddyEdge
    cert_port: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaddyFleet]:
    workdir = tmp_path_factory.mktemp("caddy-fleet")
    fleet_http01, cert_port = free_port(), free_port()
    args = [
        "--cert-listen", f"127.0.0.1:{cert_port}", "--cert-token", TOKEN,
        "--on-demand", "*.od.test", "--on-demand-per-domain", str(PER_DOMAIN),
    ]  # fmt: skip
    with (
        dns_server_process(workdir) as dns,
        running_caddy_edge(
            workdir / "caddy",
            cert_url=f"http://127.0.0.1:{cert_port}/certificate?token={TOKEN}",
            challenge_upstream=fleet_http01,
        ) as edge,
        running_acmekit_server(workdir, dns_port=dns.dns_port, http01_port=edge.http_port) as ca,
        fleet_serve_process(
            workdir, server=ca, http01_port=fleet_http01, edges=[], args=args
        ) as fleet,
    ):
        yield CaddyFleet(ca, fleet, edge, cert_port)


def _metric(fleet: FleetProcess, pattern: str) -> float | None:
    found = re.search(pattern + r" (\d+(?:\.\d+)?)$", fleet.get_text("/metrics"), re.M)
    return None if found is None else float(found.group(1))


def _wait_served(stack: CaddyFleet, name: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        serial = served_serial(stack.edge, name, stack.ca.root_path)
        if serial is not None:
            return serial
        time.sleep(0.3)
    raise AssertionError(f"caddy never served {name}:\n{stack.edge.log()[-3000:]}")


def _site_names(fleet: FleetProcess) -> list[str]:
    status, found = fleet.request("GET", "/domains?limit=1000")
    assert status == 200
    return [name for site in found["domains"] for name in site["names"]]


def test_a_site_added_through_the_api_is_served_and_renewed_without_restart(
    stack: CaddyFleet,
) -> None:
    fleet, edge, root = stack.fleet, stack.edge, stack.ca.root_path
    site = fleet.add(["api.caddy.test", "www.api.caddy.test"])
    first = fleet.wait_for(site["id"], lambda s: s["state"] == "active")
    serial = first["certificate"]["serial"]
    for name in site["names"]:
        assert served_serial(edge, name, root) == serial
    code, out = openssl_subject(edge, "www.api.caddy.test", root)
    assert code == 0 and "Verify return code: 0 (ok)" in out, out

    status, _ = fleet.request("POST", f"/domains/{site['id']}/renew")
    assert status == 202
    second = fleet.wait_for(
        site["id"],
        lambda s: s["state"] == "active" and s["certificate"]["version"] == 2,
    )
    assert second["certificate"]["serial"] != serial
    assert served_serial(edge, "api.caddy.test", root) == second["certificate"]["serial"]
    assert served_serial(edge, "www.api.caddy.test", root) == second["certificate"]["serial"]
    assert "caddy" in Path(f"/proc/{edge.pid}/cmdline").read_text()  # the same process


def test_an_allowed_unknown_name_is_issued_on_demand_and_served(stack: CaddyFleet) -> None:
    fleet, edge, root = stack.fleet, stack.edge, stack.ca.root_path
    assert served_serial(edge, "shop.od.test", root) is None  # a clean refusal, at once
    serial = _wait_served(stack, "shop.od.test")
    status, found = fleet.request("GET", "/domains?limit=1000")
    assert status == 200
    (site,) = [s for s in found["domains"] if s["names"] == ["shop.od.test"]]
    assert site["certificate"]["serial"] == serial
    assert _metric(fleet, "acmekit_fleet_on_demand_sites") is not None
    info = f'acmekit_fleet_on_demand_site_info{{site="{site["id"]}",name="shop.od.test"}}'
    assert _metric(fleet, re.escape(info)) == 1
    page = fleet.get_text("/status")
    assert "On-demand sites" in page and "<td>shop.od.test</td>" in page
    assert page.count('id="on-demand-count"') == 1


def test_a_name_outside_the_patterns_is_never_issued(stack: CaddyFleet) -> None:
    fleet, edge, root = stack.fleet, stack.edge, stack.ca.root_path
    outcome = re.escape('acmekit_fleet_on_demand_verdicts_total{outcome="not_allowed"}')
    before = _metric(fleet, outcome) or 0
    assert served_serial(edge, "intruder.elsewhere.test", root) is None
    deadline = time.monotonic() + 30
    while (_metric(fleet, outcome) or 0) <= before:
        assert time.monotonic() < deadline, "the name was never decided on"
        time.sleep(0.2)
    assert served_serial(edge, "intruder.elsewhere.test", root) is None
    assert "intruder.elsewhere.test" not in _site_names(fleet)


def test_a_flood_of_names_is_held_to_the_limit_per_registered_domain(stack: CaddyFleet) -> None:
    fleet, edge, root = stack.fleet, stack.edge, stack.ca.root_path
    flood = [f"r{i}.flood.od.test" for i in range(6)]  # registered domain: od.test
    for name in flood:
        assert served_serial(edge, name, root) is None
    limited = re.escape('acmekit_fleet_on_demand_verdicts_total{outcome="domain_limit"}')
    deadline = time.monotonic() + 30
    while (_metric(fleet, limited) or 0) < 1:
        assert time.monotonic() < deadline, "no name was held back"
        time.sleep(0.2)
    names = _site_names(fleet)
    made = [n for n in names if n.endswith(".od.test")]
    assert len(made) <= PER_DOMAIN
    assert _metric(fleet, "acmekit_fleet_on_demand_sites") == len(made)

"""A wildcard site through dns-01 CNAME delegation, served by two Debian nginx edges.

The site is `*.shop.wild.test` with its apex. The fleet's API gives the CNAME the
customer sets (`_acme-challenge.shop.wild.test` into the delegation zone); the test
sets it in `acmekit dns` through `/set-cname`, as the customer would at their provider.
The fleet publishes the dns-01 answer at the end of that chain through `acmekit dns`'s
API, our CA (a process) follows the CNAME and validates, and the fleet writes the
certificate into `_.shop.wild.test/` on both edges. nginx maps `*.shop.wild.test` (and
the apex) to that directory; `acmekit check` against each edge, for a name under the
wildcard and for the apex, sees the certificate verify.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.fleet.delegation import delegation_target
from support.acmekit_server import running_acmekit_server
from support.dnsserver import dns_server_process
from support.fleet_serve import fleet_serve_process
from support.nginx import (
    NginxEdge,
    acmekit_check,
    running_nginx_edge,
    served_serial,
    site_aliases,
)
from support.ports import free_port

pytestmark = pytest.mark.interop

ZONE = "acme-delegation.wild.test"
NAMES = ["*.shop.wild.test", "shop.wild.test"]
UNDER_WILDCARD = ["www.shop.wild.test", "cdn.shop.wild.test"]


def _check(edge: NginxEdge, name: str, root: Path, serial: str) -> None:
    shown = acmekit_check(edge, name, root)
    assert shown["verify"] == "ok", shown
    assert shown["names"].split() == sorted(NAMES)
    assert int(shown["days left"]) >= 1
    assert served_serial(edge, name, root) == serial


def test_nginx_edges_serve_a_wildcard_issued_by_delegated_dns01(tmp_path: Path) -> None:
    fleet_http01 = free_port()
    aliases = site_aliases(NAMES)
    assert aliases == {"*.shop.wild.test": "_.shop.wild.test", "shop.wild.test": "_.shop.wild.test"}
    with (
        running_nginx_edge(
            tmp_path / "nginx-a", challenge_upstream=fleet_http01, aliases=aliases
        ) as edge_a,
        running_nginx_edge(
            tmp_path / "nginx-b", challenge_upstream=fleet_http01, aliases=aliases
        ) as edge_b,
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(tmp_path, dns_port=dns.dns_port, http01_port=edge_a.http_port) as ca,
        fleet_serve_process(
            tmp_path,
            server=ca,
            http01_port=fleet_http01,
            edges=[edge_a.edge_spec, edge_b.edge_spec],
            args=[
                "--dns-api", dns.api_url,
                "--dns-resolver", dns.resolver,
                "--delegation-zone", ZONE,
            ],
        ) as fleet,
    ):  # fmt: skip
        site = fleet.add(NAMES, method="dns-01")
        target = delegation_target("shop.wild.test", ZONE)
        assert site["delegation"] == {"_acme-challenge.shop.wild.test.": target}
        for record, cname in site["delegation"].items():
            dns.post_sync("/set-cname", {"host": record, "target": cname})

        done = fleet.wait_for(
            site["id"],
            lambda s: (
                s["state"] == "active"
                and len(s["deployments"]) == 2
                and all(d["version"] == 1 for d in s["deployments"].values())
            ),
        )
        serial = done["certificate"]["serial"]
        for edge in (edge_a, edge_b):
            assert (edge.cert_dir / "_.shop.wild.test" / "fullchain.pem").exists()
            for name in [*UNDER_WILDCARD, "shop.wild.test"]:
                _check(edge, name, ca.root_path, serial)
        # Nothing was validated over http-01: no challenge reached either edge's port 80.
        for edge in (edge_a, edge_b):
            log = (edge.prefix / "access.log").read_text()
            assert "/.well-known/acme-challenge/" not in log

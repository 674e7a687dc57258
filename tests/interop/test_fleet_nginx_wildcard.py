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
from acmekit_testkit.nginx import check_served, running_edge_fleet, site_aliases

pytestmark = pytest.mark.interop

ZONE = "acme-delegation.wild.test"
NAMES = ["*.shop.wild.test", "shop.wild.test"]
UNDER_WILDCARD = ["www.shop.wild.test", "cdn.shop.wild.test"]


def test_nginx_edges_serve_a_wildcard_issued_by_delegated_dns01(tmp_path: Path) -> None:
    aliases = site_aliases(NAMES)
    assert aliases == {"*.shop.wild.test": "_.shop.wild.test", "shop.wild.test": "_.shop.wild.test"}
    with running_edge_fleet(tmp_path, aliases, delegation_zone=ZONE) as stack:
        edge_a, edge_b = stack.edges
        dns, ca, fleet = stack.dns, stack.ca, stack.fleet
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
                check_served(edge, name, ca.root_path, NAMES, serial)
        # Nothing was validated over http-01: no challenge reached either edge's port 80.
        for edge in (edge_a, edge_b):
            log = (edge.prefix / "access.log").read_text()
            assert "/.well-known/acme-challenge/" not in log

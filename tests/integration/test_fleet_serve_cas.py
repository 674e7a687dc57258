"""`acmekit fleet serve` as a process with several CAs and with dns-01 by delegation.

Failover: two `acmekit server` processes are given with `--ca`, in order; the first is
stopped before the fleet starts. A site added through the JSON API is issued by the
second, deployed, and shown with that CA; the status page shows the first passed over.

Delegation: a wildcard site added with `acmekit fleet add --method dns-01
--delegation-zone Z` prints the CNAME its customer sets; that CNAME is set in `acmekit
dns` (its /set-cname API, as the customer's provider would serve it), and the fleet,
given `--dns-api` and `--delegation-zone`, publishes the TXT answers at the end of the
chain. The CA resolves everything through that same `acmekit dns`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acmekit.fleet.delegation import delegation_target
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.fleet_serve import fleet_serve_process
from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import stop_process
from acmekit_testkit.verify import dns_names, openssl_verify

ZONE = "acme-delegation.serve.test"


def _deployed(site: dict[str, Any], version: int) -> bool:
    edges = site["deployments"].values()
    return len(edges) == 1 and all(d["version"] == version for d in edges)


def test_a_site_added_through_the_api_is_issued_by_the_second_ca_when_the_first_is_down(
    tmp_path: Path,
) -> None:
    http01 = free_port()
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    edge = tmp_path / "edge"
    with (
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(tmp_path / "one", dns_port=dns.dns_port, http01_port=http01) as one,
        running_acmekit_server(tmp_path / "two", dns_port=dns.dns_port, http01_port=http01) as two,
    ):
        stop_process(one.proc)
        cas = [
            "--ca", f"ca-one={one.directory_url},ca-bundle={one.root_path},concurrency=4",
            "--ca", f"ca-two={two.directory_url},ca-bundle={two.root_path},limit=20",
            "--batch", "10", "--concurrency", "5",
        ]  # fmt: skip
        with fleet_serve_process(tmp_path, http01_port=http01, edges=[str(edge)], args=cas) as f:
            site = f.add(["shop.failover.test", "www.shop.failover.test"], backup=False)
            assert site["options"]["backup"] is False and site["certificate"] is None
            done = f.wait_for(
                site["id"],
                lambda s: s["state"] == "active" and _deployed(s, 1),
            )
            assert done["certificate"]["ca"] == "ca-two" and done["failure_count"] == 0
            leaf = openssl_verify(
                two.root_path, edge / "shop.failover.test" / "fullchain.pem", tmp_path
            )
            assert dns_names(leaf) == ["shop.failover.test", "www.shop.failover.test"]
            assert format(leaf.serial_number, "x") == done["certificate"]["serial"]

            page = f.get_text("/status")
            assert '<td>ca-one</td><td class="failing">passed over</td>' in page
            assert "<td>ca-two</td><td>up</td>" in page
            metrics = f.get_text("/metrics")
            assert 'acmekit_fleet_issuances_total{ca="ca-two",outcome="success"} 1' in metrics
            assert 'acmekit_fleet_issuances_total{ca="ca-one",outcome="failure"} 1' in metrics


def test_a_wildcard_site_is_issued_by_dns01_through_delegation(tmp_path: Path) -> None:
    http01 = free_port()
    edge = tmp_path / "edge"
    names = ["*.shop.delegated.test", "shop.delegated.test"]
    with (
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(tmp_path, dns_port=dns.dns_port, http01_port=http01) as ca,
    ):
        # The customer's one-time record, served here by the same DNS server.
        target = delegation_target("shop.delegated.test", ZONE)
        dns.post_sync(
            "/set-cname", {"host": "_acme-challenge.shop.delegated.test.", "target": target}
        )
        args = [
            "--dns-api", dns.api_url,
            "--dns-resolver", dns.resolver,
            "--delegation-zone", ZONE,
        ]  # fmt: skip
        with fleet_serve_process(
            tmp_path, server=ca, http01_port=http01, edges=[str(edge)], args=args
        ) as f:
            added = f.cli("add", "--method", "dns-01", "--delegation-zone", ZONE, *names)
            site_id, cname = added.splitlines()
            assert cname == f"_acme-challenge.shop.delegated.test. CNAME {target}"
            done = f.wait_for(
                site_id,
                lambda s: s["state"] == "active" and _deployed(s, 1),
            )
            assert done["method"] == "dns-01" and done["failure_count"] == 0
            assert done["delegation"] == {"_acme-challenge.shop.delegated.test.": target}
            assert done["certificate"]["ca"] == ca.directory_url
            leaf = openssl_verify(
                ca.root_path, edge / "_.shop.delegated.test" / "fullchain.pem", tmp_path
            )
            assert dns_names(leaf) == sorted(names)

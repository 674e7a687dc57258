"""`acmekit fleet serve` as a process, with our CA and `acmekit dns` as processes too.

A site added through the JSON API is issued over ACME (the CA resolves the name through
`acmekit dns`, which answers 127.0.0.1, and fetches the http-01 answer from the fleet's
own responder), written to both edge directories and each edge's reload command run; a
forced renewal writes a new serial; the status page and `/metrics` show what happened.
"""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.fleet_serve import FleetProcess, fleet_serve_process
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

NAMES = ["shop.serve.test", "www.shop.serve.test"]


def _check_edge(edge: Path, root: Path, workdir: Path, serial: str) -> None:
    site_dir = edge / NAMES[0]
    leaf = openssl_verify(root, site_dir / "fullchain.pem", workdir)
    assert dns_names(leaf) == sorted(NAMES)
    assert format(leaf.serial_number, "x") == serial
    key = load_pem_private_key((site_dir / "privkey.pem").read_bytes(), password=None)
    assert key.public_key() == leaf.public_key()
    assert stat.S_IMODE((site_dir / "privkey.pem").stat().st_mode) == 0o600


def _serial_on(edge: Path) -> str:
    pem = (edge / NAMES[0] / "fullchain.pem").read_bytes()
    return format(x509.load_pem_x509_certificates(pem)[0].serial_number, "x")


def _issue_and_renew(fleet: FleetProcess, edges: list[Path], root: Path, tmp: Path) -> None:
    site = fleet.add(NAMES)
    assert site["state"] == "pending" and site["names"] == NAMES
    active = fleet.wait_for(
        site["id"],
        lambda s: (
            s["state"] == "active"
            and all(d["version"] == 1 for d in s["deployments"].values())
            and len(s["deployments"]) == 2
        ),
    )
    first = active["certificate"]["serial"]
    for edge in edges:
        _check_edge(edge, root, tmp, first)
    assert (tmp / "reloaded-b").read_text() == NAMES[0] + "\n"

    status, renewing = fleet.request("POST", f"/domains/{site['id']}/renew")
    assert status == 202 and renewing["id"] == site["id"]
    renewed = fleet.wait_for(
        site["id"],
        lambda s: (
            s["certificate"]["version"] == 2
            and all(d["version"] == 2 for d in s["deployments"].values())
        ),
    )
    second = renewed["certificate"]["serial"]
    assert second != first and renewed["state"] == "active"
    assert [_serial_on(edge) for edge in edges] == [second, second]
    for edge in edges:
        _check_edge(edge, root, tmp, second)


def test_fleet_serve_process_issues_deploys_and_renews(tmp_path: Path) -> None:
    http01 = free_port()
    edges = [tmp_path / "edge-a", tmp_path / "edge-b"]
    reload_b = f"echo {NAMES[0]} > {tmp_path}/reloaded-b"
    with (
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(tmp_path, dns_port=dns.dns_port, http01_port=http01) as ca,
        fleet_serve_process(
            tmp_path, server=ca, http01_port=http01, edges=[str(edges[0]), f"{edges[1]}:{reload_b}"]
        ) as fleet,
    ):
        _issue_and_renew(fleet, edges, ca.root_path, tmp_path)
        page = fleet.get_text("/status")
        assert (  # the site with every name
            '<td class="site"><span class="name">shop.serve.test</span> '
            '<span class="name">www.shop.serve.test</span></td>'
        ) in page
        assert f"<td>{ca.directory_url}</td>" in page  # the CA row: 2 issued, 0 failed
        metrics = fleet.get_text("/metrics")
        assert f'acmekit_fleet_issuances_total{{ca="{ca.directory_url}",outcome="success"}} 2' in (
            metrics
        )
        assert 'acmekit_fleet_sites{state="active"} 1' in metrics

        status, missing = fleet.request("GET", "/domains/nope")
        assert status == 404 and missing["status"] == 404
        status, bad = fleet.request("POST", "/domains", {"names": ["not a name"]})
        assert status == 400 and "not a DNS name" in bad["detail"]

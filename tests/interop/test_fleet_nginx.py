"""Two Debian nginx instances as the fleet's edges, in front of the fleet's http-01 responder.

The CA validates http-01 on edge A's plain-HTTP port, so every challenge goes through
nginx's `proxy_pass` to `acmekit fleet serve`. Both edges serve HTTPS from the files the
fleet writes into their directories (`ssl_certificate .../$ssl_server_name/...`), and the
fleet runs `kill -HUP <master pid>` after each write. Checked from outside with
`acmekit check` and a TLS handshake per edge: the new site's certificate, then the new
serial after a forced renewal.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

from acmekit_testkit.fleet_serve import FleetProcess
from acmekit_testkit.nginx import NginxEdge, check_served, running_edge_fleet

pytestmark = pytest.mark.interop

SITES = (["cdn.edge.test", "img.cdn.edge.test"], ["blog.edge.test"])
ALIASES = {"img.cdn.edge.test": "cdn.edge.test"}  # a site's other names -> its directory


def fetch_over_edge(edge: NginxEdge, name: str, root: Path) -> str:
    """GET / over HTTPS through the edge, the name pinned to 127.0.0.1 (like curl --resolve)."""
    ctx = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection(("127.0.0.1", edge.https_port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := tls.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _wait_deployed(fleet: FleetProcess, site_id: str, version: int) -> dict[str, object]:
    return fleet.wait_for(
        site_id,
        lambda s: (
            s["state"] == "active"
            and s["certificate"] is not None
            and s["certificate"]["version"] == version
            and len(s["deployments"]) == 2
            and all(d["version"] == version for d in s["deployments"].values())
        ),
    )


def _check_both(edges: Sequence[NginxEdge], site: dict[str, object], root: Path) -> None:
    names = site["names"]
    cert = site["certificate"]
    assert isinstance(names, list) and isinstance(cert, dict)
    for edge in edges:
        for name in names:
            check_served(edge, name, root, names, cert["serial"])
        body = fetch_over_edge(edge, names[0], root)
        assert body.startswith("HTTP/1.1 200") and f"for {names[0]}" in body


def handshake_ok(edge: NginxEdge, sni: str) -> bool:
    """Does `openssl s_client` complete a handshake with SNI `sni` (any name at all)?"""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{edge.https_port}", "-servername", sni],
        input=b"", capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    return result.returncode == 0


def _challenges_went_through_nginx(edge: NginxEdge) -> list[str]:
    log = (edge.prefix / "access.log").read_text()
    return [line for line in log.splitlines() if "/.well-known/acme-challenge/" in line]


def test_nginx_edges_serve_new_and_renewed_certificates(tmp_path: Path) -> None:
    with running_edge_fleet(tmp_path, ALIASES) as stack:
        edges = edge_a, edge_b = stack.edges
        ca, fleet = stack.ca, stack.fleet
        added = [fleet.add(names) for names in SITES]
        first = [_wait_deployed(fleet, site["id"], 1) for site in added]
        for site in first:
            _check_both(edges, site, ca.root_path)
        # Three names, each validated by the CA through edge A's nginx.
        assert len(_challenges_went_through_nginx(edge_a)) >= 3
        assert _challenges_went_through_nginx(edge_b) == []
        # SNI goes into a file path: a name that walks out of its directory gets nothing.
        assert handshake_ok(edge_a, "cdn.edge.test")
        assert not handshake_ok(edge_a, "../certs/cdn.edge.test")
        assert not handshake_ok(edge_a, "unknown.edge.test")
        reloads = [edge.reloads() for edge in edges]
        assert min(reloads) >= 1

        for site in added:
            status, _ = fleet.request("POST", f"/domains/{site['id']}/renew")
            assert status == 202
        second = [_wait_deployed(fleet, site["id"], 2) for site in added]
        for before, after in zip(first, second, strict=True):
            assert after["certificate"]["serial"] != before["certificate"]["serial"]  # type: ignore[index]
            _check_both(edges, after, ca.root_path)
        assert all(edge.reloads() > n for edge, n in zip(edges, reloads, strict=True))

        with urllib.request.urlopen(fleet.base_url + "/status", timeout=10) as resp:
            page = resp.read().decode()
        assert (
            '<span class="name">cdn.edge.test</span> <span class="name">img.cdn.edge.test' in page
        )
        assert '<td class="site"><span class="name">blog.edge.test</span></td>' in page

"""`bench/fleet.py --caddy N`: from a customer's first handshake at a Caddy edge to a
valid certificate there.

`acmekit server` (validating http-01 through Caddy's plain-HTTP port, which forwards to
the fleet's responder; every name resolves to 127.0.0.1 through `acmekit dns`),
`acmekit fleet serve` with `--cert-listen` and `--on-demand '*.bench.test'`, and
Debian's Caddy asking it for every certificate, all on loopback. For each of N names in
turn, one handshake at Caddy starts the clock (it fails: the fleet has no certificate
yet and decides in the background); handshakes follow every 50 ms until one verifies
against the CA's root for that name. Every process is stopped by its PID.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.caddy import running_caddy_edge, served_serial
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.fleet_serve import fleet_serve_process
from acmekit_testkit.ports import free_port

POLL = 0.05  # seconds between handshakes
TIMEOUT = 120.0


@dataclass(frozen=True)
class CaddyResult:
    seconds: list[float]  # per name, first handshake to a verified certificate

    def describe(self) -> str:
        s = sorted(self.seconds)
        return (
            f"First handshake at a Caddy edge to a valid certificate there (on demand,"
            f" {len(s)} names one after another, {POLL * 1000:.0f} ms between handshakes):"
            f" median {statistics.median(s):.2f} s, min {s[0]:.2f} s, max {s[-1]:.2f} s"
        )


def run_caddy(count: int, workdir: Path) -> CaddyResult:
    fleet_http01, cert_port = free_port(), free_port()
    args = ["--cert-listen", f"127.0.0.1:{cert_port}", "--on-demand", "*.bench.test",
            "--on-demand-per-domain", str(count + 1),
            "--on-demand-per-minute", str(count + 1)]  # fmt: skip
    seconds: list[float] = []
    with (
        dns_server_process(workdir) as dns,
        running_caddy_edge(
            workdir / "caddy",
            cert_url=f"http://127.0.0.1:{cert_port}/certificate",
            challenge_upstream=fleet_http01,
        ) as edge,
        running_acmekit_server(
            workdir, dns_port=dns.dns_port, http01_port=edge.http_port, verbose=False
        ) as ca,
        fleet_serve_process(workdir, server=ca, http01_port=fleet_http01, edges=[], args=args),
    ):
        for i in range(count):
            name = f"customer{i}.bench.test"
            start = time.monotonic()
            while served_serial(edge, name, ca.root_path) is None:
                if time.monotonic() - start > TIMEOUT:
                    raise RuntimeError(f"{name}: no certificate at Caddy after {TIMEOUT} s")
                time.sleep(POLL)
            seconds.append(time.monotonic() - start)
    return CaddyResult(seconds)

"""The client CLI with renewal information and dns-01, against `acmekit server` and
`acmekit dns` as real processes: `renew` waits for the CA's ARI window, renews once the
window is moved to now, and names the old certificate in `replaces`; `--dns-hook` gets a
wildcard with the propagation check looking at the zone's authoritative server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509

from acmekit.database import create_engine
from acmekit.protocol.ari import cert_id_of
from acmekit.server.schema import orders
from acmekit_testkit.acmekit_server import CaProcess, running_ca_process
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.verify import dns_names, openssl_verify

Ca = CaProcess[DnsServerHandle]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ca]:
    workdir = tmp_path_factory.mktemp("cli-ari")
    with dns_server_process(workdir) as dns, running_ca_process(workdir, dns) as ca:
        yield ca


def acmekit(ca: Ca, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_acmekit(ca.server.root_path, *args, *certbot_dirs(tmp))


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_renew_follows_the_ari_window_and_sends_replaces(ca: Ca, tmp_path: Path) -> None:
    got = acmekit(
        ca, tmp_path, "certonly", "-n", "--agree-tos", "-m", "ops@ari.test",
        "--server", ca.server.directory_url, "--standalone",
        "--http-01-address", "127.0.0.1", "--http-01-port", str(ca.http01_port),
        "-d", "renew.ari.test",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    live = tmp_path / "etc" / "live" / "renew.ari.test"
    first = _leaf(live / "cert.pem")
    renew = ["renew", "--no-random-sleep-on-renew"]
    early = acmekit(ca, tmp_path, *renew)
    assert early.returncode == 0, early.stderr
    assert not (tmp_path / "etc" / "archive" / "renew.ari.test" / "cert2.pem").exists()
    # A window wholly in the past (as for a mass-revocation drill) means: renew now.
    past = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    moved = subprocess.run(
        [sys.executable, "-m", "acmekit", "server", "ari", "move",
         "--state-dir", str(ca.server.state_dir), "--serial", format(first.serial_number, "x"),
         "--to", past],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    due = acmekit(ca, tmp_path, *renew)
    assert due.returncode == 0, due.stderr + due.stdout
    second = _leaf(live / "cert.pem")
    assert second.serial_number != first.serial_number
    engine = create_engine(f"sqlite:///{ca.server.state_dir / 'acmekit.db'}")
    with engine.begin() as conn:
        replaces = conn.execute(sa.select(orders.c.replaces)).scalars().all()
    engine.dispose()
    assert str(cert_id_of(first)) in replaces


def test_dns_hook_gets_a_wildcard(ca: Ca, tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    hook.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f'present) curl -sf -X POST -d \'{{"host":"\'$2\'","value":"\'$3\'"}}\' '
        f"{ca.dns.api_url}/set-txt;;\n"
        f"cleanup) curl -sf -X POST -d '{{\"host\":\"'$2'\"}}' {ca.dns.api_url}/clear-txt;;\n"
        "esac\n"
    )
    hook.chmod(0o755)
    got = acmekit(
        ca, tmp_path, "certonly", "-n", "--agree-tos", "-m", "ops@ari.test",
        "--server", ca.server.directory_url, "--dns-hook", str(hook),
        "--dns-resolver", ca.dns.resolver, "--dns-propagation-seconds", "30",
        "-d", "hook.ari.test", "-d", "*.hook.ari.test",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr + got.stdout
    live = tmp_path / "etc" / "live" / "hook.ari.test"
    leaf = openssl_verify(ca.server.root_path, live / "fullchain.pem", tmp_path)
    assert dns_names(leaf) == ["*.hook.ari.test", "hook.ari.test"]

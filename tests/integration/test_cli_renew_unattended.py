"""`renew` as cron or a timer runs it: no terminal, no REQUESTS_CA_BUNDLE. The renewal
conf keeps the `--ca-bundle` that `certonly` was given, the random delay is announced
in certbot's words, after `acmekit server ari move` a `renew` that is not due yet says
when the CA's window has it due, and a renewal that fails says so once, with a hint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.certbot.renewalconf import get_section, parse
from acmekit_testkit.acmekit_server import CaProcess, running_ca_process
from acmekit_testkit.cli import certbot_dirs
from acmekit_testkit.dnsserver import DnsServerHandle

Ca = CaProcess[DnsServerHandle]
NAME = "cron.unattended.test"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle) -> Iterator[Ca]:
    with running_ca_process(tmp_path_factory.mktemp("unattended-ca"), dns) as found:
        yield found


def _unattended(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`acmekit ARGS` with no terminal and no REQUESTS_CA_BUNDLE, as cron runs it."""
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    return subprocess.run(
        [sys.executable, "-m", "acmekit", *args, *certbot_dirs(tmp)],
        capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_renew_from_cron_trusts_the_saved_bundle_says_its_delay_and_when_ari_has_it_due(
    ca: Ca, tmp_path: Path
) -> None:
    got = _unattended(
        tmp_path, "certonly", "-n", "--agree-tos", "-m", "ops@unattended.test",
        "--server", ca.server.directory_url, "--ca-bundle", str(ca.server.root_path),
        "--standalone", "--http-01-address", "127.0.0.1", "--http-01-port", str(ca.http01_port),
        "-d", NAME,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    conf = parse((tmp_path / "etc" / "renewal" / f"{NAME}.conf").read_text())
    assert get_section(conf, "renewalparams")["ca_bundle"] == str(ca.server.root_path)

    forced = _unattended(tmp_path, "renew", "--force-renewal", "--max-random-sleep", "1.5")
    assert forced.returncode == 0, forced.stderr
    assert re.fullmatch(
        r"Non-interactive renewal: random delay of \d+\.\d\d seconds", forced.stderr.strip()
    ), forced.stderr
    assert f"{NAME}: renewed" in forced.stdout
    assert (tmp_path / "etc" / "archive" / NAME / "cert2.pem").exists()

    leaf = x509.load_pem_x509_certificate(
        (tmp_path / "etc" / "live" / NAME / "cert.pem").read_bytes()
    )
    start = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    moved = subprocess.run(
        [sys.executable, "-m", "acmekit", "server", "ari", "move",
         "--state-dir", str(ca.server.state_dir), "--serial", format(leaf.serial_number, "x"),
         "--to", start.strftime("%Y-%m-%dT%H:%M:%SZ")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    early = _unattended(tmp_path, "renew")
    assert early.returncode == 0, early.stderr
    assert "random delay" not in early.stderr  # nothing due: no delay
    found = re.search(
        rf"^{re.escape(NAME)}: not due for renewal yet \(expires (\S+); due (\S+ \S+) UTC, "
        r"in the CA's renewal window \(ARI\)\)$",
        early.stdout,
        re.MULTILINE,
    )
    assert found is not None, early.stdout
    due = datetime.strptime(found[2], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert start <= due <= leaf.not_valid_after_utc

    # Given a bundle that does not hold the CA's root, a renewal fails: said once, with
    # what to do, and kept in the log file.
    other = tmp_path / "other-root.pem"
    other.write_bytes(_self_signed_pem())
    bad = _unattended(
        tmp_path, "renew", "--force-renewal", "--no-random-sleep-on-renew",
        "--ca-bundle", str(other),
    )  # fmt: skip
    assert bad.returncode == 1
    (line,) = bad.stderr.splitlines()
    assert line.startswith(f"acmekit: {NAME}: renewal failed: GET {ca.server.directory_url}: ")
    assert line.endswith("give its root with --ca-bundle FILE or REQUESTS_CA_BUNDLE=FILE")
    assert f"ERROR acmekit.certbot.certmanager: renewal of {NAME} failed" in (
        (tmp_path / "logs" / "acmekit.log").read_text()
    )


def _self_signed_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)

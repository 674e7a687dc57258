"""Our client next to real peers: it renews a lineage Debian's certbot made (certbot
still lists it afterwards), and obtains a certificate from Pebble with its chaos on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from cryptography import x509

from acmekit_testkit.cli import certbot_dirs, run_trusting
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.pebble import running_pebble
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names

from .conftest import CaUnderTest

pytestmark = pytest.mark.interop
CERTBOT = "/usr/bin/certbot"


def _renew_certbot_lineage(directory: str, root: Path, http01: int, tmp_path: Path) -> None:
    """certbot makes a lineage; `acmekit renew` renews it; certbot still lists it, with the
    new certificate, and its renewal conf is untouched."""
    made = run_trusting(
        [CERTBOT, "certonly", "--non-interactive", "--agree-tos", "-m", "ops@interop.test",
         "--server", directory, *certbot_dirs(tmp_path), "--key-type", "ecdsa",
         "--standalone", "--http-01-port", str(http01),
         "--http-01-address", "127.0.0.1", "-d", "renewme.certbot.test"],
        root,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    live = tmp_path / "etc" / "live" / "renewme.certbot.test"
    conf_before = (tmp_path / "etc" / "renewal" / "renewme.certbot.test.conf").read_text()

    renewed = run_trusting(
        [sys.executable, "-m", "acmekit", "renew", "--force-renewal",
         "--no-random-sleep-on-renew", *certbot_dirs(tmp_path)],
        root,
    )  # fmt: skip
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr[-3000:]
    assert os.readlink(live / "cert.pem") == "../../archive/renewme.certbot.test/cert2.pem"
    new = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    assert dns_names(new) == ["renewme.certbot.test"]
    conf_after = (tmp_path / "etc" / "renewal" / "renewme.certbot.test.conf").read_text()
    assert conf_after == conf_before

    listed = run_trusting([CERTBOT, "certificates", *certbot_dirs(tmp_path)], root)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "Certificate Name: renewme.certbot.test" in listed.stdout
    assert f"Serial Number: {new.serial_number:x}" in listed.stdout
    assert f"Expiry Date: {new.not_valid_after_utc}" in listed.stdout
    assert "INVALID" not in listed.stdout


def test_acmekit_renews_a_certbot_lineage(acmekit_ca: CaUnderTest, tmp_path: Path) -> None:
    server = acmekit_ca.server
    _renew_certbot_lineage(server.directory_url, server.root_path, acmekit_ca.http01_port, tmp_path)


def test_acmekit_renews_a_certbot_lineage_made_against_pebble(
    interop_dns: DnsServerHandle, tmp_path: Path
) -> None:
    # Debian's certbot 2.1 crashes on badNonce, so Pebble rejects no good nonce here.
    http01 = free_port()
    calm = {"PEBBLE_WFE_NONCEREJECT": "0"}
    with running_pebble(
        tmp_path, dns_port=interop_dns.dns_port, http_port=http01, tls_port=free_port(), env=calm
    ) as pebble:
        _renew_certbot_lineage(pebble.directory_url, pebble.root_ca_path, http01, tmp_path)


def test_certonly_against_pebble_with_nonce_rejection(
    interop_dns: DnsServerHandle, tmp_path: Path
) -> None:
    http01 = free_port()
    chaos = {"PEBBLE_WFE_NONCEREJECT": "30"}  # reject 30% of good nonces
    with running_pebble(
        tmp_path, dns_port=interop_dns.dns_port, http_port=http01, tls_port=free_port(), env=chaos
    ) as pebble:
        result = run_trusting(
            [sys.executable, "-m", "acmekit", "certonly", "-n", "--agree-tos",
             "-m", "ops@interop.test", "--server", pebble.directory_url, *certbot_dirs(tmp_path),
             "--standalone", "--http-01-port", str(http01), "--http-01-address", "127.0.0.1",
             "-d", "pebble.cli.test", "-d", "www.pebble.cli.test"],
            pebble.root_ca_path,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    live = tmp_path / "etc" / "live" / "pebble.cli.test"
    cert = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    assert dns_names(cert) == ["pebble.cli.test", "www.pebble.cli.test"]
    assert os.readlink(live / "privkey.pem") == "../../archive/pebble.cli.test/privkey1.pem"

"""The `tlsserver` profile through our own client against `acmekit server` (real
processes), and the Baseline Requirements' schedule refusing a configuration at start."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from acmekit.server.lint import lint_certificate_der
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.ports import free_port


def test_preferred_profile_tlsserver_gets_a_45_day_certificate(tmp_path: Path) -> None:
    http01 = free_port()
    with (
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(tmp_path, dns_port=dns.dns_port, http01_port=http01) as ca,
    ):
        result = run_acmekit(
            ca.root_path, "certonly", "-n", "--agree-tos", "-m", "ops@tls.test",
            "--server", ca.directory_url, *certbot_dirs(tmp_path / "client"),
            "--standalone", "--http-01-port", str(http01), "--http-01-address", "127.0.0.1",
            "--preferred-profile", "tlsserver", "-d", "minimal.tls.test",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    live = tmp_path / "client" / "etc" / "live" / "minimal.tls.test" / "cert.pem"
    leaf = x509.load_pem_x509_certificates(live.read_bytes())[0]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=45)
    assert leaf.subject == x509.Name([])
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # What the CA linted before signing: nothing but its test names and loopback URLs.
    codes = {
        f.code for f in lint_certificate_der(leaf.public_bytes(serialization.Encoding.DER)).findings
    }
    assert codes <= {"cabf.internal_domain_name"}, codes


def test_a_lifetime_over_the_schedule_is_refused_at_start_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "ca.toml").write_text(
        '[profiles.long]\ndescription = "too long"\ncertificate_lifetime = 34560000\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "acmekit", "server", "--config", "ca.toml", "--state-dir", "st",
         "--listen", f"127.0.0.1:{free_port()}", "--crl-listen", ""],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "profile 'long': certificate_lifetime 400 days" in lines[0]
    assert "maximum validity" in lines[0] and "§6.3.2" in lines[0]
    assert not (tmp_path / "st").exists()  # refused before anything was made

"""certbot (Debian's, unchanged) obtains certificates from `acmekit server`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from acmekit_testkit.cli import certbot_dirs, run_trusting, serving_webroot
from acmekit_testkit.verify import dns_names, openssl_verify

from .conftest import CaUnderTest

pytestmark = pytest.mark.interop
CERTBOT = "/usr/bin/certbot"


def _certbot(ca: CaUnderTest, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        CERTBOT, "certonly", "--non-interactive", "--agree-tos", "-m", "ops@interop.test",
        "--server", ca.server.directory_url, *certbot_dirs(tmp), "--key-type", "ecdsa", *args,
    ]  # fmt: skip
    return run_trusting(argv, ca.server.root_path)


def _check_lineage(ca: CaUnderTest, tmp: Path, name: str, names: list[str]) -> None:
    live = tmp / "etc" / "live" / name
    cert = openssl_verify(ca.server.root_path, live / "fullchain.pem", tmp)
    assert dns_names(cert) == sorted(names)
    assert (live / "privkey.pem").exists()


def test_certbot_standalone_http01(acmekit_ca: CaUnderTest, tmp_path: Path) -> None:
    result = _certbot(
        acmekit_ca, tmp_path, "--standalone",
        "--http-01-port", str(acmekit_ca.http01_port), "--http-01-address", "127.0.0.1",
        "-d", "standalone.certbot.test", "-d", "www.standalone.certbot.test",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    _check_lineage(
        acmekit_ca,
        tmp_path,
        "standalone.certbot.test",
        ["standalone.certbot.test", "www.standalone.certbot.test"],
    )


def test_certbot_webroot(acmekit_ca: CaUnderTest, tmp_path: Path) -> None:
    with serving_webroot(tmp_path / "www", acmekit_ca.http01_port) as webroot:
        result = _certbot(
            acmekit_ca, tmp_path, "--webroot", "-w", str(webroot), "-d", "webroot.certbot.test"
        )
    assert result.returncode == 0, result.stderr[-3000:]
    _check_lineage(acmekit_ca, tmp_path, "webroot.certbot.test", ["webroot.certbot.test"])


def test_certbot_revokes(acmekit_ca: CaUnderTest, tmp_path: Path) -> None:
    issued = _certbot(
        acmekit_ca, tmp_path, "--standalone",
        "--http-01-port", str(acmekit_ca.http01_port), "--http-01-address", "127.0.0.1",
        "-d", "revoke.certbot.test",
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr[-3000:]
    cert = tmp_path / "etc" / "live" / "revoke.certbot.test" / "cert.pem"
    argv = [
        CERTBOT, "revoke", "--non-interactive", "--cert-path", str(cert),
        "--reason", "keycompromise", "--no-delete-after-revoke",
        "--server", acmekit_ca.server.directory_url, *certbot_dirs(tmp_path),
    ]  # fmt: skip
    revoked = run_trusting(argv, acmekit_ca.server.root_path, timeout=120)
    assert revoked.returncode == 0, revoked.stderr[-3000:]
    assert "Congratulations! You have successfully revoked" in revoked.stdout + revoked.stderr

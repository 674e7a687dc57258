"""`acmekit certonly --nginx`, `acmekit --nginx` (run) and `acmekit renew` end to end:
`acmekit server` validates http-01 on the port Debian's nginx listens on, and asks
`acmekit dns` (every name is 127.0.0.1); curl checks what nginx serves afterwards."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from acmekit_testkit.acmekit_server import CaProcess
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.nginx_site import NginxSite, running_nginx_site
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop

CaUnderTest = CaProcess[DnsServerHandle]
NAMES = ["a.nginx.test", "www.a.nginx.test"]


@pytest.fixture
def site(acmekit_ca: CaUnderTest, tmp_path: Path) -> Iterator[NginxSite]:
    with running_nginx_site(tmp_path / "nginx", acmekit_ca.http01_port) as running:
        yield running


def _acmekit(ca: CaUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_acmekit(ca.server.root_path, *args)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result


def _nginx_flags(site: NginxSite) -> list[str]:
    return ["--nginx-server-root", str(site.server_root), "--nginx-sleep-seconds", "0.2",
            "--http-01-port", str(site.http_port)]  # fmt: skip


def _curl(root: Path, name: str, port: int) -> subprocess.CompletedProcess[str]:
    """curl over HTTPS, polled until it connects: a reload returns before nginx
    listens on a new port."""
    deadline = time.monotonic() + 20
    while True:
        result = _curl_once(root, name, port)
        if result.returncode != 7 or time.monotonic() > deadline:  # 7: cannot connect
            return result
        time.sleep(0.1)


def _curl_once(root: Path, name: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--cacert", str(root),
         "--resolve", f"{name}:{port}:127.0.0.1", "--write-out", "%{http_code}",
         f"https://{name}:{port}/"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def _served_serial(root: Path, name: str, port: int) -> int:
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
         "-CAfile", str(root), "-verify_return_error"],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return x509.load_pem_x509_certificate(result.stdout.encode()).serial_number


def _wait_serial(root: Path, name: str, port: int, expected: int) -> int:
    """The served serial, polled until it is `expected`: after a reload, the old workers
    finish their connections with the old certificate."""
    deadline = time.monotonic() + 20
    while (served := _served_serial(root, name, port)) != expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return served


def _lineage_serial(tmp_path: Path) -> int:
    pem = (tmp_path / "etc" / "live" / NAMES[0] / "cert.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).serial_number


def test_certonly_run_and_renew_through_nginx(
    acmekit_ca: CaUnderTest, site: NginxSite, tmp_path: Path
) -> None:
    ca, root = acmekit_ca, acmekit_ca.server.root_path
    account = ["-n", "--agree-tos", "-m", "ops@nginx.test", "--server", ca.server.directory_url]
    domains = [f for n in NAMES for f in ("-d", n)]
    before = site.snapshot()

    # certonly: the answers go through nginx, and the configuration comes back unchanged
    out = _acmekit(
        ca, "certonly", "--nginx", *_nginx_flags(site), *account, *domains, *certbot_dirs(tmp_path)
    )
    assert "Successfully received certificate." in out.stdout
    assert site.snapshot() == before
    conf = (tmp_path / "etc" / "renewal" / f"{NAMES[0]}.conf").read_text()
    for line in ("authenticator = nginx", "installer = nginx",
                 f"nginx_server_root = {site.server_root}"):  # fmt: skip
        assert line in conf.splitlines(), conf

    # run (certbot's default command): the certificate is not due, so it is installed
    https_port = free_port()
    out = _acmekit(
        ca, "--nginx", *_nginx_flags(site), "--https-port", str(https_port), "--redirect",
        *account, *domains, *certbot_dirs(tmp_path),
    )  # fmt: skip
    assert "not yet due" in out.stdout and "Deployed the certificate" in out.stdout
    for name in NAMES:
        shown = _curl(root, name, https_port)
        assert shown.stdout == "site a\n200", shown.stderr
        status, location, _ = site.get(name, "/page")
        assert (status, location) == (301, f"https://{name}:{https_port}/page")
    first = _lineage_serial(tmp_path)
    assert _wait_serial(root, NAMES[0], https_port, first) == first
    installed = site.snapshot()

    # renew: the nginx authenticator again (past the redirect), then nginx reloads
    out = _acmekit(
        ca, "renew", "--force-renewal", "--no-random-sleep-on-renew", *certbot_dirs(tmp_path)
    )
    assert f"{NAMES[0]}: renewed" in out.stdout
    second = _lineage_serial(tmp_path)
    assert second != first
    assert _wait_serial(root, NAMES[1], https_port, second) == second
    assert site.snapshot() == installed  # only the files behind the live links changed

    # rollback undoes the installation; install puts it back, on another port
    _acmekit(ca, "rollback", "--nginx", *_nginx_flags(site)[:4], *certbot_dirs(tmp_path))
    assert site.snapshot() == before
    assert site.wait_for(NAMES[0], "/", (200, "site a\n")) == (200, "site a\n")
    other_port = free_port()
    out = _acmekit(
        ca, "install", "--cert-name", NAMES[0], "--nginx", *_nginx_flags(site),
        "--https-port", str(other_port), *certbot_dirs(tmp_path),
    )  # fmt: skip
    assert "Deployed the certificate" in out.stdout
    assert _curl(root, NAMES[1], other_port).stdout == "site a\n200"
    assert site.get(NAMES[0], "/")[:2] == (200, "")  # no --redirect this time

"""certbot and lego (Debian's, unchanged) obtain certificates from `acmekit server` with
three remote perspectives corroborating every validation ([mpic] on): the perspectives
change nothing a client sees (http-01 here; dns-01 and tls-alpn-01 with perspectives
are in tests/integration/test_mpic_*.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.cli import certbot_dirs, run_trusting
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.perspectives import running_perspective
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

pytestmark = pytest.mark.interop
RIRS = {"i-arin": "ARIN", "i-ripe": "RIPE", "i-apnic": "APNIC"}


@dataclass(frozen=True)
class MpicCa:
    server: ServerHandle
    http01_port: int
    workdir: Path


@pytest.fixture(scope="module")
def mpic_ca(
    tmp_path_factory: pytest.TempPathFactory, interop_dns: DnsServerHandle
) -> Iterator[MpicCa]:
    workdir = tmp_path_factory.mktemp("mpic-ca")
    state, http01 = workdir / "ca-state", free_port()
    with ExitStack() as stack:
        perspectives = [
            stack.enter_context(
                running_perspective(
                    workdir, state, name, rir, dns_port=interop_dns.dns_port, http01_port=http01
                )
            )
            for name, rir in RIRS.items()
        ]
        settings = {
            "crl": {"listen": f"127.0.0.1:{free_port()}"},
            "mpic": {"enabled": True, "perspectives": [p.settings() for p in perspectives]},
        }
        server = stack.enter_context(
            running_acmekit_server(
                workdir, dns_port=interop_dns.dns_port, http01_port=http01, state_dir=state,
                settings=settings,
            )
        )  # fmt: skip
        yield MpicCa(server, http01, workdir)


def corroborated(ca: MpicCa, name: str) -> bool:
    log = ca.server.log.read_text()
    return any(
        "mpic for authorization" in line and f"({name}): pass" in line for line in log.splitlines()
    )


def test_certbot_with_perspectives(mpic_ca: MpicCa, tmp_path: Path) -> None:
    argv = [
        "/usr/bin/certbot", "certonly", "--non-interactive", "--agree-tos",
        "-m", "ops@interop.test", "--server", mpic_ca.server.directory_url,
        *certbot_dirs(tmp_path), "--key-type", "ecdsa", "--standalone",
        "--http-01-port", str(mpic_ca.http01_port), "--http-01-address", "127.0.0.1",
        "-d", "certbot.mpic.test",
    ]  # fmt: skip
    result = run_trusting(argv, mpic_ca.server.root_path)
    assert result.returncode == 0, result.stderr[-3000:]
    live = tmp_path / "etc" / "live" / "certbot.mpic.test"
    cert = openssl_verify(mpic_ca.server.root_path, live / "fullchain.pem", tmp_path)
    assert dns_names(cert) == ["certbot.mpic.test"]
    assert corroborated(mpic_ca, "certbot.mpic.test")


def test_lego_with_perspectives(mpic_ca: MpicCa, tmp_path: Path) -> None:
    argv = [
        "/usr/bin/lego", "--server", mpic_ca.server.directory_url, "--accept-tos",
        "--email", "ops@interop.test", "--path", str(tmp_path / "lego"), "--key-type", "ec256",
        "--domains=lego.mpic.test", "--http", "--http.port",
        f"127.0.0.1:{mpic_ca.http01_port}", "run",
    ]  # fmt: skip
    env = {**os.environ, "LEGO_CA_CERTIFICATES": str(mpic_ca.server.root_path)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    crt = tmp_path / "lego" / "certificates" / "lego.mpic.test.crt"
    assert dns_names(openssl_verify(mpic_ca.server.root_path, crt, tmp_path)) == ["lego.mpic.test"]
    assert corroborated(mpic_ca, "lego.mpic.test")

"""certbot and lego (Debian's, unchanged) obtain certificates from `acmekit server` with
three remote perspectives corroborating every validation ([mpic] on): the perspectives
change nothing a client sees (http-01 here; dns-01 and tls-alpn-01 with perspectives
are in tests/integration/test_mpic_*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.cli import certbot_standalone, lego_certificate, run_lego
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.perspectives import corroborated, mpic_settings, running_perspectives
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

pytestmark = pytest.mark.interop


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
        perspectives = stack.enter_context(
            running_perspectives(
                workdir, state, dns_ports=[interop_dns.dns_port] * 3, http01_port=http01
            )
        )
        settings = {
            "crl": {"listen": f"127.0.0.1:{free_port()}"},
            "mpic": mpic_settings(perspectives),
        }
        server = stack.enter_context(
            running_acmekit_server(
                workdir, dns_port=interop_dns.dns_port, http01_port=http01, state_dir=state,
                settings=settings,
            )
        )  # fmt: skip
        yield MpicCa(server, http01, workdir)


def test_certbot_with_perspectives(mpic_ca: MpicCa, tmp_path: Path) -> None:
    result = certbot_standalone(mpic_ca.server, tmp_path, mpic_ca.http01_port, "certbot.mpic.test")
    assert result.returncode == 0, result.stderr[-3000:]
    live = tmp_path / "etc" / "live" / "certbot.mpic.test"
    cert = openssl_verify(mpic_ca.server.root_path, live / "fullchain.pem", tmp_path)
    assert dns_names(cert) == ["certbot.mpic.test"]
    assert corroborated(mpic_ca.server.log, "certbot.mpic.test")


def test_lego_with_perspectives(mpic_ca: MpicCa, tmp_path: Path) -> None:
    http01 = f"127.0.0.1:{mpic_ca.http01_port}"
    result = run_lego(mpic_ca.server, tmp_path, ["lego.mpic.test"], "--http", "--http.port", http01)
    assert result.returncode == 0, result.stderr[-3000:]
    crt = lego_certificate(tmp_path, "lego.mpic.test")
    assert dns_names(openssl_verify(mpic_ca.server.root_path, crt, tmp_path)) == ["lego.mpic.test"]
    assert corroborated(mpic_ca.server.log, "lego.mpic.test")

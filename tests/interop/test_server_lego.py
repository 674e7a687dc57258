"""lego (Debian's, unchanged) obtains certificates from `acmekit server`: http-01,
tls-alpn-01, and a wildcard over dns-01 through its `exec` provider; a failed validation
answered `invalid` is reported."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

from .conftest import CaUnderTest

pytestmark = pytest.mark.interop
LEGO = "/usr/bin/lego"


def _lego_run(
    ca: CaUnderTest, tmp: Path, names: list[str], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [
        LEGO, "--server", ca.server.directory_url, "--accept-tos", "--email", "ops@interop.test",
        "--path", str(tmp / "lego"), "--key-type", "ec256",
        *(f"--domains={n}" for n in names), *args, "run",
    ]  # fmt: skip
    full_env = {**os.environ, "LEGO_CA_CERTIFICATES": str(ca.server.root_path), **(env or {})}
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=180)


def _lego(
    ca: CaUnderTest, tmp: Path, names: list[str], *args: str, env: dict[str, str] | None = None
) -> Path:
    result = _lego_run(ca, tmp, names, *args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "lego" / "certificates" / f"{names[0].replace('*', '_')}.crt"


def test_lego_http01(acmekit_ca: CaUnderTest, tmp_path: Path) -> None:
    crt = _lego(
        acmekit_ca, tmp_path, ["http.lego.test"],
        "--http", "--http.port", f"127.0.0.1:{acmekit_ca.http01_port}",
    )  # fmt: skip
    assert dns_names(openssl_verify(acmekit_ca.server.root_path, crt, tmp_path)) == [
        "http.lego.test"
    ]


def test_lego_tlsalpn01(acmekit_ca: CaUnderTest, tmp_path: Path) -> None:
    crt = _lego(
        acmekit_ca, tmp_path, ["alpn.lego.test"],
        "--tls", "--tls.port", f"127.0.0.1:{acmekit_ca.tlsalpn01_port}",
    )  # fmt: skip
    assert dns_names(openssl_verify(acmekit_ca.server.root_path, crt, tmp_path)) == [
        "alpn.lego.test"
    ]


def test_lego_dns01_wildcard(acmekit_ca: CaUnderTest, tmp_path: Path) -> None:
    api = acmekit_ca.dns.api_url
    hook = tmp_path / "hook.sh"
    hook.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f'present) curl -sf -X POST -d \'{{"host":"\'$2\'","value":"\'$3\'"}}\' '
        f"{api}/set-txt;;\n"
        f"cleanup) curl -sf -X POST -d '{{\"host\":\"'$2'\"}}' {api}/clear-txt;;\n"
        "esac\n"
    )
    hook.chmod(0o755)
    crt = _lego(
        acmekit_ca, tmp_path, ["wild.lego.test", "*.wild.lego.test"],
        "--dns", "exec", "--dns.disable-cp",
        "--dns.resolvers", f"127.0.0.1:{acmekit_ca.dns.dns_port}",
        env={"EXEC_PATH": str(hook), "EXEC_SEQUENCE_INTERVAL": "1"},
    )  # fmt: skip
    cert = openssl_verify(acmekit_ca.server.root_path, crt, tmp_path)
    assert dns_names(cert) == ["*.wild.lego.test", "wild.lego.test"]


def test_lego_reads_an_invalid_challenge_answer(acmekit_ca: CaUnderTest, tmp_path: Path) -> None:
    """The CA answers a quickly failed validation `invalid`, with its error, in the
    challenge's answer (RFC 8555 §7.5.1); lego takes it as final, reports the CA's error
    and issues nothing."""
    elsewhere = free_port()  # lego serves http-01 where the CA does not look
    result = _lego_run(
        acmekit_ca, tmp_path, ["refused.lego.test"],
        "--http", "--http.port", f"127.0.0.1:{elsewhere}",
    )  # fmt: skip
    assert result.returncode != 0
    assert "urn:ietf:params:acme:error:connection" in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "lego" / "certificates" / "refused.lego.test.crt").exists()

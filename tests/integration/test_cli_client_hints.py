"""The client's failures on this side, met for real, end in one `acmekit:` line that
says what to do: a responder port another process holds (and the flag that moves it),
a CA whose certificate is not trusted (`--ca-bundle` / `REQUESTS_CA_BUNDLE`), `--manual`
without a hook or a terminal (`--manual-auth-hook`); and the operator commands name a
PostgreSQL database that does not exist."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit_testkit.acmekit_server import CaProcess, running_ca_process
from acmekit_testkit.cli import certbot_dirs
from acmekit_testkit.databases import POSTGRES_HOST, POSTGRES_PORT
from acmekit_testkit.dnsserver import DnsServerHandle


@pytest.fixture(scope="module")
def ca(
    tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle
) -> Iterator[CaProcess[DnsServerHandle]]:
    with running_ca_process(tmp_path_factory.mktemp("hints-ca"), dns) as found:
        yield found


def _fails_with_one_line(argv: list[str], tmp: Path, ca_bundle: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    if ca_bundle is not None:
        env["REQUESTS_CA_BUNDLE"] = str(ca_bundle)
    result = subprocess.run(
        [sys.executable, "-m", "acmekit", *argv],
        capture_output=True, text=True, timeout=120, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("acmekit: ")
    return line


def _certonly(ca: CaProcess[DnsServerHandle], tmp: Path, name: str, *args: str) -> list[str]:
    return [
        "certonly", "--non-interactive", "--agree-tos", "--register-unsafely-without-email",
        "--server", ca.server.directory_url, *certbot_dirs(tmp), "-d", name, *args,
    ]  # fmt: skip


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--standalone", "--http-01-address", "127.0.0.1", "--http-01-port"], "--http-01-port"),
        (["--standalone", "--preferred-challenges", "tls-alpn-01", "--tls-alpn-01-port"],
         "--tls-alpn-01-port"),
    ],
    ids=["http-01", "tls-alpn-01"],
)  # fmt: skip
def test_a_busy_responder_port_names_the_port_and_the_flag(
    ca: CaProcess[DnsServerHandle], tmp_path: Path, held_port: int, args: list[str], flag: str
) -> None:
    argv = _certonly(ca, tmp_path, f"busy{held_port}.hints.test", *args, str(held_port))
    line = _fails_with_one_line(argv, tmp_path, ca.server.root_path)
    assert f"port {held_port} is already in use by another process" in line
    assert f"choose another port with {flag} N" in line


def test_an_untrusted_ca_points_at_ca_bundle(
    ca: CaProcess[DnsServerHandle], tmp_path: Path
) -> None:
    argv = _certonly(ca, tmp_path, "untrusted.hints.test", "--standalone")
    line = _fails_with_one_line(argv, tmp_path, ca_bundle=None)
    assert f"GET {ca.server.directory_url}: the ACME server's certificate is not trusted" in line
    assert line.endswith("give its root with --ca-bundle FILE or REQUESTS_CA_BUNDLE=FILE")


def test_manual_without_a_hook_names_manual_auth_hook(
    ca: CaProcess[DnsServerHandle], tmp_path: Path
) -> None:
    argv = _certonly(ca, tmp_path, "manual.hints.test", "--manual")
    line = _fails_with_one_line(argv, tmp_path, ca.server.root_path)
    assert "--manual-auth-hook CMD" in line and "ValueError" not in line


@pytest.mark.postgres
@pytest.mark.parametrize(
    "argv",
    [["server", "db", "upgrade"], ["server", "db", "current"], ["fleet", "db", "upgrade"],
     ["fleet", "db", "current"]],
    ids=lambda argv: " ".join(argv),
)  # fmt: skip
def test_db_commands_name_a_missing_postgres_database(argv: list[str], tmp_path: Path) -> None:
    name = f"absent_{secrets.token_hex(6)}"
    url = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    line = _fails_with_one_line([*argv, "--db", url], tmp_path, None)
    assert f"the PostgreSQL database '{name}' does not exist" in line
    assert "OperationalError" not in line

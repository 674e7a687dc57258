"""Bad input on the command line ends in one line naming the problem and a non-zero exit,
never a traceback, whichever program it reaches."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit_testkit.databases import POSTGRES_HOST, POSTGRES_PORT, fresh_postgres_database

CASES = [
    (["check", "127.0.0.1:abc"], "'abc' is not a port"),
    (["server", "--dns-resolver", "garbage"], "the port is missing"),
    (["server", "--db", "mysql://x"], "sqlite:///FILE"),
    (["server", "--http01-port", "99999"], "99999"),
    (["server", "--allow-validation-network", "10.0.0.1/8"], "'10.0.0.1/8' is not a network"),
    (["dns", "--default-ipv4", "notanip", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"],
     "notanip"),
    (["fleet", "list", "--db", "bogus"], "bogus"),
    (["server", "--ct-log-list", "missing.json"], "log list missing.json"),
    (["check", "127.0.0.1:9", "--ct-log-list", "missing.json"], "log list missing.json"),
    (["certonly", "--server", "https://127.0.0.1:9/directory", "--standalone", "-d", "a.test",
      "--http-01-port", "70000"], "70000"),
    (["revoke", "--cert-path", "missing.pem", "-n", "--config-dir", "etc", "--work-dir", "work",
      "--logs-dir", "logs"], "cannot read certificate missing.pem"),
]  # fmt: skip


def _one_line_error(argv: list[str], cwd: Path) -> str:
    """Run `acmekit ARGV`; its only error line, after checking it failed without a
    traceback or an exception's name."""
    result = subprocess.run(
        [sys.executable, "-m", "acmekit", *argv],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "OSError" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "rror" in line or "acmekit:" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(c[0][:2]) for c in CASES])
def test_bad_input_is_one_line(argv: list[str], words: str, tmp_path: Path) -> None:
    assert words in _one_line_error(argv, tmp_path)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this test holds, over TCP and UDP."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    port = tcp.getsockname()[1]
    udp = socket.socket(type=socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    try:
        yield port
    finally:
        tcp.close()
        udp.close()


BUSY = [
    (["server", "--state-dir", "st", "--crl-listen", "127.0.0.1:0", "--listen"], "--listen"),
    (["dns", "--api", "127.0.0.1:0", "--listen"], "--listen"),
    (["dns", "--listen", "127.0.0.1:0", "--api"], "--api"),
    (["fleet", "serve", "--server", "https://127.0.0.1:9/directory", "--db", "sqlite:///f.db",
      "--listen", "127.0.0.1:0", "--http01-listen"], "--http01-listen"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "flag"), BUSY, ids=[f"{c[0][0]} {c[1]}" for c in BUSY])
def test_a_busy_port_names_the_address_and_the_flag(
    argv: list[str], flag: str, busy_port: int, tmp_path: Path
) -> None:
    line = _one_line_error([*argv, f"127.0.0.1:{busy_port}"], tmp_path)
    assert f"127.0.0.1:{busy_port} is already in use" in line
    assert line.endswith(f"choose another with {flag}")


@pytest.mark.postgres
@pytest.mark.parametrize("argv", [["server", "--state-dir", "st"], ["server", "eab", "list"],
                                  ["fleet", "list"], ["fleet", "serve", "--listen", "127.0.0.1:0",
                                  "--http01-listen", "127.0.0.1:0", "--server", "https://x/d"]],
                         ids=["server", "server eab", "fleet list", "fleet serve"])  # fmt: skip
def test_a_missing_postgres_database_is_named(argv: list[str], tmp_path: Path) -> None:
    name = f"absent_{secrets.token_hex(6)}"
    url = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    line = _one_line_error([*argv, "--db", url], tmp_path)
    assert f"the PostgreSQL database '{name}' does not exist" in line
    assert f"createdb -h {POSTGRES_HOST}" in line and "OperationalError" not in line


def test_a_toml_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "ca.toml").write_text("listen = \n")
    line = _one_line_error(["server", "--config", "ca.toml", "--state-dir", "st"], tmp_path)
    assert line.startswith("acmekit: ca.toml: not valid TOML: ") and "line 1" in line


@pytest.mark.parametrize("argv", [["fleet", "list"], ["fleet", "status"],
                                  ["fleet", "status", "a.test"], ["fleet", "renew", "a.test"]],
                         ids=["list", "status", "status one", "renew"])  # fmt: skip
def test_a_fleet_command_that_reads_creates_no_inventory(argv: list[str], tmp_path: Path) -> None:
    line = _one_line_error(argv, tmp_path)
    assert f"no fleet inventory at {tmp_path / 'fleet.db'}" in line
    assert "acmekit fleet add" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_a_fleet_command_that_reads_leaves_an_empty_postgres_database_empty(
    tmp_path: Path,
) -> None:
    with fresh_postgres_database("fleet_ro") as url:
        line = _one_line_error(["fleet", "list", "--db", url], tmp_path)
        assert f"no fleet inventory at {url}" in line
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            assert sa.inspect(engine).get_table_names() == []
        finally:
            engine.dispose()

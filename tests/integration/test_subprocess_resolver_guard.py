"""The processes tests start may not ask the machine's DNS resolver for a name: Python
ones (the `acmekit` command line, certbot) run with the guard the test session turns on
(`acmekit_testkit.resolvers`), and a lookup of any name but an IP literal or localhost
fails at once, saying so, instead of reaching the resolver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from acmekit_testkit.cli import certbot_dirs
from acmekit_testkit.resolvers import GUARD_ENV

PUBLIC = "acme-v02.api.letsencrypt.org"
REFUSED = f"resolver guard: getaddrinfo('{PUBLIC}') would ask the machine's DNS resolver"


def run_guarded(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`argv` with this session's environment, which must hold the guard: without it
    the child would ask the real resolver, which no test may let happen."""
    assert os.environ.get(GUARD_ENV) == "1", "the test session did not turn the guard on"
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=os.environ)


@pytest.mark.parametrize(
    "lookup",
    [
        f"socket.getaddrinfo({PUBLIC!r}, 443)",
        f"socket.create_connection(({PUBLIC!r}, 443), timeout=5)",
        f"async def main():\n    await asyncio.get_running_loop().getaddrinfo({PUBLIC!r}, 443)\n"
        "asyncio.run(main())",
        f"socket.gethostbyname({PUBLIC!r})",
    ],
)
def test_a_subprocess_looking_up_a_public_name_fails_loudly(lookup: str) -> None:
    got = run_guarded([sys.executable, "-c", f"import asyncio, socket\n{lookup}"])
    assert got.returncode == 1
    assert "SystemResolverRefused" in got.stderr
    assert f"({PUBLIC!r}) would ask the machine's DNS resolver" in got.stderr


def test_loopback_lookups_still_answer() -> None:
    script = (
        "import socket\n"
        "for host in ('localhost', '127.0.0.1', '::1', 'fe80::1%lo', None, b'127.0.0.1'):\n"
        "    socket.getaddrinfo(host, 80, flags=socket.AI_PASSIVE)\n"
        "socket.getaddrinfo('127.0.0.1', 80, flags=socket.AI_NUMERICHOST)\n"
        "print(socket.gethostbyname('localhost'))\n"
    )
    got = run_guarded([sys.executable, "-c", script])
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "127.0.0.1"


def test_the_command_line_given_a_public_ca_fails_before_the_resolver(tmp_path: Path) -> None:
    """`acmekit register` against Let's Encrypt's directory, as a test that forgot its
    own CA would run it: it stops at the lookup, naming it."""
    got = run_guarded(
        [
            sys.executable, "-m", "acmekit", "register", "-n", "--agree-tos",
            "--register-unsafely-without-email",
            "--server", f"https://{PUBLIC}/directory", *certbot_dirs(tmp_path),
        ]
    )  # fmt: skip
    assert got.returncode != 0
    assert REFUSED in got.stderr

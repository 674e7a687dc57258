"""The README's "Point certbot at it" block, run as written against what `make run`
starts (only its ports moved): certbot and our client each get a certificate."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from acmekit_testkit.docs import REPO, Example, example_blocks, move_ports
from acmekit_testkit.ports import free_port, free_tcp_udp_port
from acmekit_testkit.processes import logged_process, wait_for_lines
from acmekit_testkit.verify import dns_names, openssl_verify

pytestmark = pytest.mark.interop
ACMEKIT = str(Path(sys.executable).with_name("acmekit"))


def _certbot_block() -> list[Example]:
    blocks = [b for b in example_blocks(REPO / "README.md") if b and b[0].command == "make run"]
    assert len(blocks) == 1, "README has one example block that starts with `make run`"
    return blocks[0]


def _make_run(state: Path, ca: int, flags: str) -> list[str]:
    """The command `make run` runs (`make -n`, the virtualenv taken as installed)."""
    shown = subprocess.run(
        ["make", "-s", "-n", "-o", ".venv/.installed", "run", f"STATE={state}",
         f"RUN_LISTEN=127.0.0.1:{ca}", f"RUN_FLAGS={flags}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (line,) = shown.stdout.strip().splitlines()
    argv = shlex.split(line)
    assert argv[0] == ".venv/bin/acmekit"
    return [ACMEKIT, *argv[1:]]


def test_readme_certbot_and_acmekit_examples_after_make_run(tmp_path: Path) -> None:
    block = _certbot_block()
    ca, http01 = free_port(), free_port()
    flags = (
        f"--demo-dns 127.0.0.1:{free_tcp_udp_port()} --demo-dns-api 127.0.0.1:{free_port()} "
        f"--http01-port {http01} --tlsalpn01-port {free_port()} "
        f"--crl-listen 127.0.0.1:{free_port()}"
    )
    moves = {
        "127.0.0.1:14000": f"127.0.0.1:{ca}",
        "--http-01-port 5002": f"--http-01-port {http01}",
        ".venv/bin/acmekit": ACMEKIT,
    }
    log = tmp_path / "make-run.log"
    with logged_process(_make_run(tmp_path / "state", ca, flags), log) as proc:
        wait_for_lines(proc, log, ["directory: "], "make run")
        for example in block[1:]:
            command = move_ports(example.command, moves)
            result = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=180
            )
            output = result.stdout[-2000:] + result.stderr[-2000:]
            assert result.returncode == 0, f"{example}\n{output}"
    root = tmp_path / "state" / "root.pem"
    for config_dir in ("certbot/etc", "client/etc"):
        chain = tmp_path / config_dir / "live" / "www.example.test" / "fullchain.pem"
        assert dns_names(openssl_verify(root, chain, tmp_path)) == ["www.example.test"]

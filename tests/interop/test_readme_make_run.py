"""The README's "Point certbot at it" block, run as written against what `make run`
starts (only its ports moved): certbot and our client each get a certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit_testkit.docs import REPO, Example, MakeRun, example_blocks, run_block
from acmekit_testkit.verify import dns_names, openssl_verify

pytestmark = pytest.mark.interop


def _certbot_block() -> list[Example]:
    blocks = [b for b in example_blocks(REPO / "README.md") if b and b[0].command == "make run &"]
    assert len(blocks) == 1, "README has one example block that starts with `make run &`"
    assert any("certbot certonly" in e.command for e in blocks[0])
    return blocks[0]


def test_readme_certbot_and_acmekit_examples_after_make_run(tmp_path: Path) -> None:
    run = MakeRun.on_free_ports(tmp_path / "state")
    moves = {
        "127.0.0.1:14000": f"127.0.0.1:{run.ca}",
        "--http-01-port 5002": f"--http-01-port {run.http01}",
    }
    run_block(_certbot_block(), tmp_path, moves, run.variables())
    root = tmp_path / "state" / "root.pem"
    for config_dir in ("certbot/etc", "client/etc"):
        chain = tmp_path / config_dir / "live" / "www.example.test" / "fullchain.pem"
        assert dns_names(openssl_verify(root, chain, tmp_path)) == ["www.example.test"]

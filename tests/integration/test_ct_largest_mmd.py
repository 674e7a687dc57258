"""The largest MMD the TOML file takes (under 1e9 s, the nine digits `--mmd` allows)
starts a log whose log list the project's own reader reads and whose tree grows: the
bound at start is the only one, and nothing past it fails later (RFC 6962 §3)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from acmekit.protocol import ct
from acmekit_testkit.ctlog import (
    ca_hierarchy,
    chain_json,
    json_call,
    leaf_certificate,
    started_log,
)
from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import logged_process, wait_until


def test_the_largest_mmd_of_the_file_gives_a_log_that_works(tmp_path: Path) -> None:
    issuer = ca_hierarchy(tmp_path / "ca")
    (tmp_path / "ct.toml").write_text("[ct]\nmmd = 999999999.9\n")
    argv = [
        sys.executable, "-m", "acmekit", "ct", "--config", str(tmp_path / "ct.toml"),
        "--listen", f"127.0.0.1:{free_port()}", "--state-dir", str(tmp_path / "log"),
        "--roots", str(tmp_path / "ca" / "root.pem"),
    ]  # fmt: skip
    out = tmp_path / "log.out"
    with logged_process(argv, out) as proc:
        running = started_log(proc, tmp_path / "log", out)
        (info,) = ct.LogList.loads(running.log_list.read_text()).logs
        assert info.mmd == 1_000_000_000
        cert = leaf_certificate(issuer, "largest-mmd.example")
        body = json.dumps(chain_json([cert, issuer.intermediate_cert])).encode()
        status, _ = json_call(running.url + "ct/v1/add-chain", body)
        assert status == 200

        def grown() -> bool:
            return json_call(running.url + "ct/v1/get-sth")[1]["tree_size"] == 1

        wait_until("the tree's growth", grown, 30, [out])

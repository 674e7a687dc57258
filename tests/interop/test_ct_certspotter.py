"""Debian's certspotter (SSLMate's CT monitor) follows `acmekit ct`: it reads the log
list the log writes, downloads the entries, rebuilds the tree and verifies the signed
tree heads against it, as the log grows, and finds the certificates on its watch list
(final certificates and precertificates). Only loopback URLs are ever given to it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from acmekit_testkit.ctlog import (
    RunningLog,
    ca_hierarchy,
    chain_json,
    leaf_certificate,
    running_ct_log,
)
from acmekit_testkit.processes import log_tail, logged_process, wait_until

pytestmark = pytest.mark.interop


def post(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def get_sth(log: RunningLog) -> dict[str, Any]:
    with urllib.request.urlopen(log.url + "ct/v1/get-sth", timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def verified(state: Path) -> dict[str, Any]:
    """What certspotter has verified of the (one) log: {} before it has."""
    files = list((state / "logs").glob("*/state.json"))
    if not files:
        return {}
    doc: dict[str, Any] = json.loads(files[0].read_text()).get("verified_sth") or {}
    return doc


def test_certspotter_follows_the_log_and_verifies_its_tree_heads(tmp_path: Path) -> None:
    issuer = ca_hierarchy(tmp_path / "ca")
    inter = issuer.intermediate_cert
    with running_ct_log(tmp_path / "log", tmp_path / "ca" / "root.pem", mmd=1.0) as log:
        add, add_pre = log.url + "ct/v1/add-chain", log.url + "ct/v1/add-pre-chain"
        post(add, chain_json([leaf_certificate(issuer, "www.watched.test"), inter]))
        post(
            add_pre, chain_json([leaf_certificate(issuer, "pre.watched.test", precert=True), inter])
        )
        post(add, chain_json([leaf_certificate(issuer, "elsewhere.test"), inter]))
        wait_until("3 entries sequenced", lambda: get_sth(log)["tree_size"] == 3, 30, [log.output])

        watch = tmp_path / "watchlist"
        watch.write_text(".watched.test\n")
        state, out = tmp_path / "certspotter", tmp_path / "certspotter.log"
        argv = [
            "certspotter",
            "-logs", str(log.log_list),
            "-watchlist", str(watch),
            "-state_dir", str(state),
            "-stdout",
            "-no_save",
            "-verbose",
        ]  # fmt: skip
        env = {"HOME": str(tmp_path / "home"), "CERTSPOTTER_CONFIG_DIR": str(tmp_path / "conf")}
        # certspotter polls a log only every few minutes, so it is run twice: the second
        # run resumes from the head the first verified, and must extend that tree
        with logged_process(argv, out, env=env):
            sth = get_sth(log)
            wait_until(
                "certspotter verifies the head of 3",
                lambda: verified(state).get("tree_size") == 3,
                60,
                [out, log.output],
            )
            assert verified(state)["sha256_root_hash"] == sth["sha256_root_hash"]
        first_run = log_tail(out, 100_000)

        for i in range(4):
            post(add, chain_json([leaf_certificate(issuer, f"n{i}.watched.test"), inter]))
        wait_until("7 entries sequenced", lambda: get_sth(log)["tree_size"] == 7, 30, [log.output])
        with logged_process(argv, out, env=env):
            wait_until(
                "certspotter verifies the head of 7",
                lambda: verified(state).get("tree_size") == 7,
                60,
                [out, log.output],
            )
            assert verified(state)["sha256_root_hash"] == get_sth(log)["sha256_root_hash"]
        second_run = log_tail(out, 100_000)
        for name in ("www.watched.test", "pre.watched.test"):
            assert f"DNS Name = {name}" in first_run
        for name in ("n0.watched.test", "n3.watched.test"):
            assert f"DNS Name = {name}" in second_run
        assert "www.watched.test" not in second_run  # resumed, not started over
        for text in (first_run, second_run):
            assert "elsewhere.test" not in text
            assert "error" not in text.lower().replace("stopped with error context canceled", "")

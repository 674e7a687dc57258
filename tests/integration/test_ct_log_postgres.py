"""Two `acmekit ct` processes on one PostgreSQL database are one log: both accept and
serve, the same entry gets the same SCT from either, one sequences at a time, and when
the sequencer dies the other takes the lease over and the tree keeps growing."""

from __future__ import annotations

import json
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acmekit.ct.schema import leases
from acmekit.database import create_engine
from acmekit.protocol import ct
from acmekit_testkit.ctlog import (
    RunningLog,
    ca_hierarchy,
    chain_json,
    ct_log_argv,
    der,
    leaf_certificate,
    running_ct_log,
    started_log,
)
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.processes import logged_process, stop_process, wait_until
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.postgres


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def size(log: RunningLog) -> int:
    with urllib.request.urlopen(log.url + "ct/v1/get-sth", timeout=10) as resp:
        return int(json.loads(resp.read())["tree_size"])


def test_two_processes_share_a_log_and_the_sequencer_fails_over(tmp_path: Path) -> None:
    require_postgres_or_skip()
    issuer = ca_hierarchy(tmp_path / "ca")
    roots, state = tmp_path / "ca" / "root.pem", tmp_path / "log"
    inter = issuer.intermediate_cert
    with fresh_postgres_database("acmekit_ct") as url:
        engine = create_engine(url)
        # entered in order: the second starts once the first has made the key both use
        with (
            running_ct_log(state, roots, db=url, output=tmp_path / "a.log") as a,
            running_ct_log(state, roots, db=url, output=tmp_path / "b.log") as b,
        ):
            assert a.log_id == b.log_id
            (info,) = ct.LogList.loads(a.log_list.read_text()).logs
            cert = leaf_certificate(issuer, "shared.example")
            first = post(a.url + "ct/v1/add-chain", chain_json([cert, inter]))
            assert post(b.url + "ct/v1/add-chain", chain_json([cert, inter])) == first
            sct = ct.SignedCertificateTimestamp.from_json(first)
            assert ct.verify_sct(sct, ct.SignedEntry.x509(der(cert)), info.key)
            post(
                b.url + "ct/v1/add-chain",
                chain_json([leaf_certificate(issuer, "b.example"), inter]),
            )
            wait_until(
                "both entries sequenced",
                lambda: size(a) == 2 == size(b),
                30,
                [a.output, b.output],
            )

            with engine.connect() as conn:
                holder = conn.execute(sa.select(leases.c.holder)).scalar_one()
            by_pid = {a.process.pid: a, b.process.pid: b}
            sequencer = by_pid[int(holder.split("-")[0])]
            survivor = b if sequencer is a else a
            stop_process(sequencer.process)
            for i in range(3):
                chain = chain_json([leaf_certificate(issuer, f"after{i}.example"), inter])
                post(survivor.url + "ct/v1/add-chain", chain)
            wait_until("the survivor sequences", lambda: size(survivor) == 5, 30, [survivor.output])
            with engine.connect() as conn:
                now_holder = conn.execute(sa.select(leases.c.holder)).scalar_one()
            assert int(now_holder.split("-")[0]) == survivor.process.pid
        engine.dispose()


def test_processes_starting_together_make_one_log(tmp_path: Path) -> None:
    require_postgres_or_skip()
    ca_hierarchy(tmp_path / "ca")
    roots, state = tmp_path / "ca" / "root.pem", tmp_path / "log"
    with fresh_postgres_database("acmekit_ct") as url, ExitStack() as stack:
        outputs = [tmp_path / f"p{i}.log" for i in range(3)]
        procs = [
            stack.enter_context(logged_process(ct_log_argv(state, roots, db=url), out))
            for out in outputs
        ]
        logs = [started_log(p, state, out) for p, out in zip(procs, outputs, strict=True)]
        assert len({log.log_id for log in logs}) == 1
        heads = [size(log) for log in logs]
        assert heads == [0, 0, 0]

"""On PostgreSQL the log's sessions are ended by the server once idle inside a
transaction for the lease time (`CtStore.end_stalled_sessions`), so that a stalled
process does not keep the index lock. When that ends the writer's session in the middle
of a batch (its commit never reached), the batch's submitters are told the database is
unavailable (503 with Retry-After, as for any outage), not answered with an internal
error; nothing of the batch is stored, and the next batch, on a fresh connection, takes
the next index."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acmekit.ct.app import CtApp
from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.schema import entries
from acmekit.ct.store import CtStore
from acmekit.database import create_engine
from acmekit.protocol import ct
from acmekit_testkit.ctlog import ca_hierarchy, chain_json, leaf_certificate, served_log
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.postgres


class Hold:
    """`before_commit`: while armed, holds a batch before its commit until released."""

    def __init__(self) -> None:
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            self.release.wait(timeout=60)


def _post(url: str, body: dict[str, Any]) -> tuple[int, str | None, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("retry-after"), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("retry-after"), json.loads(exc.read())


def _session_alive(url: str, pid: int) -> bool:
    admin = create_engine(url)
    try:
        with admin.connect() as conn:
            found = conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar_one()
    finally:
        admin.dispose()
    return bool(found)


def test_a_batch_whose_session_the_server_ended_is_answered_503(tmp_path: Path) -> None:
    require_postgres_or_skip()
    issuer = ca_hierarchy(tmp_path / "ca")
    inter = issuer.intermediate_cert
    hold = Hold()
    with fresh_postgres_database("acmekit_ctend") as url:
        store = CtStore.from_url(url, before_commit=hold)
        try:
            # An MMD of 1 s: a lease, and so an idle-in-transaction timeout, of 333 ms.
            settings = LogSettings(roots=(issuer.root_cert,), mmd=1.0)
            ctlog = CtLog(store, load_or_create_key(tmp_path), settings)
            with served_log(CtApp(ctlog)) as base, ThreadPoolExecutor(1) as pool:
                warm = _post(
                    base + "add-chain", chain_json([leaf_certificate(issuer, "w.x"), inter])
                )
                assert warm[0] == 200
                pid = store._writer._conn.driver_connection.info.backend_pid
                hold.armed = True
                ended = pool.submit(
                    _post, base + "add-chain", chain_json([leaf_certificate(issuer, "e.x"), inter])
                )
                assert hold.reached.wait(30)
                # Held inside its transaction until the server has ended the session.
                for _ in range(3000):
                    if not _session_alive(url, pid):
                        break
                    time.sleep(0.01)
                assert not _session_alive(url, pid)
                hold.release.set()
                status, retry_after, doc = ended.result(30)
                after = _post(
                    base + "add-chain", chain_json([leaf_certificate(issuer, "n.x"), inter])
                )
            assert (status, retry_after, doc["error"]) == (503, "2", "unavailable")
            assert after[0] == 200
            sct = ct.SignedCertificateTimestamp.from_json(after[2])
            assert ct.leaf_index_of(sct.extensions) == 1
            with store.engine.connect() as conn:
                assert conn.execute(
                    sa.select(entries.c.seq).order_by(entries.c.seq)
                ).scalars().all() == [0, 1]
        finally:
            hold.release.set()
            store.close()

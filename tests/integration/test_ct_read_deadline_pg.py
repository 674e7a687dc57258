"""A PostgreSQL server that stops answering (a half-open connection: the relay between
the log and the server holds everything) does not hang the log's reads: get-entries,
get-sth once its head is stale and the checkpoint each get a 503 within the read
deadline, and the read thread is free again. The server's `statement_timeout` could
not end these: its reply is what never comes. Twice as many reads as the log has read
threads are sent at once, so the second half is answered only on threads the first
half gave back."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from acmekit.ct.app import READ_THREADS
from acmekit.ct.service import CtConfig, assemble
from acmekit_testkit.ctlog import ca_hierarchy, der, json_call, leaf_certificate, served_log
from acmekit_testkit.databases import POSTGRES_PORT, fresh_postgres_database
from acmekit_testkit.freezerelay import freezable_relay
from acmekit_testkit.processes import wait_until
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.postgres


def _status(url: str) -> tuple[int, str]:
    """Status and error code of one GET (a bound for a hang, not a speed)."""
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()).get("error", "")


def test_reads_over_a_silent_connection_get_a_503(tmp_path: Path) -> None:
    require_postgres_or_skip()
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_postgres_database("acmekit_ct") as direct, freezable_relay(POSTGRES_PORT) as relay:
        url = make_url(direct).set(port=relay.port).render_as_string(hide_password=False)
        config = CtConfig(
            state_dir=tmp_path / "log", roots=tmp_path / "ca" / "root.pem", db=url, mmd=0.1
        )
        app = assemble(config)
        try:
            inter = issuer.intermediate_cert
            app.log.add_chain([der(leaf_certificate(issuer, "silent.example")), der(inter)], False)
            assert app.log.sequence_once() == 1
            with served_log(app) as base:
                root = base.removesuffix("ct/v1/")
                assert json_call(base + "get-entries?start=0&end=0")[0] == 200
                relay.freeze()
                wait_until("the head is stale", lambda: app.log.sth_answer() is None, 30, [])
                urls = [
                    base + "get-entries?start=0&end=0",
                    base + "get-sth",
                    root + "checkpoint",
                ] * READ_THREADS
                with ThreadPoolExecutor(len(urls)) as pool:
                    answers = list(pool.map(_status, urls))
                assert answers == [(503, "unavailable")] * len(urls)
        finally:
            relay.close()
            app.log.store.close()

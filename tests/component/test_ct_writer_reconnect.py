"""The log keeps one database connection for its group-commit writes. When PostgreSQL
closes it while it sits idle (a restart, an idle timeout: here the server terminates
its backend), the next submission is still stored: the dead connection shows at the
transaction's first statement, before anything is written, and a fresh one takes its
place. A connection that fails within a transaction is dropped, never reused."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.store import CtStore
from acmekit.database import create_engine
from acmekit.protocol import ct
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.postgres


def _terminate(url: str, pid: int) -> None:
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()


def test_a_kept_connection_the_server_closed_is_replaced(tmp_path: Path) -> None:
    require_postgres_or_skip()
    issuer = ca_hierarchy(tmp_path / "ca")
    inter = der(issuer.intermediate_cert)
    with fresh_postgres_database("acmekit_ctw") as url:
        store = CtStore.from_url(url)
        try:
            ctlog = CtLog(store, load_or_create_key(tmp_path), LogSettings((issuer.root_cert,)))
            first = ctlog.add_chain([der(leaf_certificate(issuer, "a.example")), inter], False)
            kept = store._writer._conn
            _terminate(url, kept.driver_connection.info.backend_pid)

            second = ctlog.add_chain([der(leaf_certificate(issuer, "b.example")), inter], False)
            assert store._writer._conn is not kept
            assert [ct.leaf_index_of(s.extensions) for s in (first, second)] == [0, 1]
            assert ctlog.sequence_once() == 2
        finally:
            store.close()

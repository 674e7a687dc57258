"""What a store's connections read, counted rather than timed, on either database: on
SQLite the virtual machine's steps (a progress handler called at each), on PostgreSQL
the index entries and table rows read from the CA's order, authorization and challenge
tables (the statistics views, flushed as the connections close)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlalchemy as sa

from acmekit.server.store import Store


class Reads:
    """What the store's connections read, counted as the module docstring says."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.steps = 0
        sa.event.listen(sa.pool.Pool, "connect", self._connected)
        store.engine.dispose()  # every connection from now on is counted

    def close(self) -> None:
        sa.event.remove(sa.pool.Pool, "connect", self._connected)

    def _connected(self, dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.set_progress_handler(self._step, 1)

    def _step(self) -> int:
        self.steps += 1
        return 0

    def _pg_rows(self) -> int:
        self.store.engine.dispose()
        url = self.store.engine.url
        admin = sa.create_engine(url.set(drivername="postgresql+psycopg"))
        try:
            with admin.connect() as conn:
                wait_for_clients_gone(conn)
                conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
                return int(
                    conn.execute(
                        sa.text(
                            "SELECT (SELECT COALESCE(SUM(idx_tup_read), 0) FROM "
                            "pg_stat_user_indexes WHERE relname IN ('orders', "
                            "'authorizations', 'challenges')) + (SELECT COALESCE("
                            "SUM(seq_tup_read), 0) FROM pg_stat_user_tables WHERE relname "
                            "IN ('orders', 'authorizations', 'challenges'))"
                        )
                    ).scalar_one()
                )
        finally:
            admin.dispose()

    def of(self, work: Any) -> tuple[int, Any]:
        """What `work()` read, and what it returned."""
        if self.store.remote:
            before = self._pg_rows()
            done = work()
            return self._pg_rows() - before, done
        before = self.steps
        done = work()
        return self.steps - before, done


def wait_for_clients_gone(conn: sa.Connection) -> None:
    """Until the store's closed connections have left: a backend's statistics are
    flushed before it leaves pg_stat_activity. Client backends only (an autovacuum
    worker may stay on the database for seconds), and each look at a new snapshot: a
    transaction keeps the activity it first read until pg_stat_clear_snapshot()."""
    deadline = time.monotonic() + 30
    while True:
        conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        left = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        if not left:
            return
        assert time.monotonic() < deadline, f"{left} connections still open after 30 s"
        time.sleep(0.02)

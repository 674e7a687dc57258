"""The store's own prepared statements on PostgreSQL (repos/base.py's `_PostgresStatements`)
when the server's copy of one is gone or stale: a schema change made by another
connection (a migration run while the CA serves), or psycopg's own DEALLOCATE ALL on a
connection the store shares with SQLAlchemy's pool. psycopg's cursor forgot a prepared
statement whose execution failed and prepared it afresh later; the store must not keep
failing on a name the server no longer has, or on a plan it can no longer use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres_database("acmekit_prep") as url:
        yield url


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store.from_url(pg_url)
    yield store
    store.engine.dispose()


def _other_connection(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def _alter_tat(url: str, kind: str) -> None:
    """A migration run elsewhere while the CA serves: the column's type changes."""
    with _other_connection(url) as conn:
        conn.execute(f"ALTER TABLE rate_buckets ALTER COLUMN tat TYPE {kind}")


def test_a_prepared_statement_recovers_after_a_result_type_change(
    pg_url: str, pg_store: Store
) -> None:
    with pg_store.db.once() as c:
        c.run("INSERT INTO rate_buckets (key, tat) VALUES (?, ?)", ("k", 7))
    for _ in range(8):  # prepared by the store after the threshold
        assert pg_store.buckets.tat("k") == 7
    _alter_tat(pg_url, "numeric")
    failed = 0
    for _ in range(8):
        try:
            assert pg_store.buckets.tat("k") == 7
        except psycopg.errors.FeatureNotSupported:
            failed += 1
    # as psycopg's cursor: at most the one execution that found the plan stale fails
    assert failed <= 1


def test_a_prepared_statement_recovers_when_the_server_dropped_it(pg_store: Store) -> None:
    """A connection's prepared statements gone on the server (DISCARD ALL or DEALLOCATE
    ALL sent on it by anything else than the store): the store prepares anew, at worst
    after one failed execution, instead of failing on the name for good."""
    with pg_store.db.once() as c:
        c.run("INSERT INTO rate_buckets (key, tat) VALUES (?, ?)", ("k", 7))
    for _ in range(8):
        assert pg_store.buckets.tat("k") == 7
    dbapi = pg_store.db._local.dbapi
    assert dbapi is not None
    dbapi.execute("DEALLOCATE ALL")
    failed = 0
    for _ in range(8):
        try:
            assert pg_store.buckets.tat("k") == 7
        except psycopg.errors.InvalidSqlStatementName:
            failed += 1
    assert failed <= 1


def test_psycopgs_rollback_on_a_shared_connection_keeps_the_stores_statements(
    pg_store: Store,
) -> None:
    """The pool's connections serve both SQLAlchemy's transactions (`Database.tx`, where
    psycopg prepares its own statements and its `rollback()` sends DEALLOCATE ALL when
    it holds any) and the store's statements (a nested block's connection, from the
    same pool). psycopg's prepared statements from before the store took the connection
    must not make a later rollback of a SQLAlchemy transaction on it drop the store's."""
    db = pg_store.db
    with db.once() as c:  # this thread's kept connection: taken, so the pool's next is new
        c.run("INSERT INTO rate_buckets (key, tat) VALUES (?, ?)", ("k", 7))
    # SQLAlchemy's transactions on a pooled connection: psycopg prepares its own statement
    for _ in range(8):
        with db.tx() as conn:
            assert conn.execute(sa.text("SELECT tat FROM rate_buckets WHERE key = 'k'")).one()
    with db.tx() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()

    def nested_reads() -> None:
        with db.once() as outer:
            outer.one("SELECT 1")
            with db.once() as inner:  # a connection of its own, from the pool
                assert inner.one("SELECT pg_backend_pid()") == (pid,)
                for _ in range(8):
                    assert inner.one("SELECT tat FROM rate_buckets WHERE key = ?", ("k",)) == (7,)

    nested_reads()

    class Failed(Exception):
        pass

    # a transaction of SQLAlchemy's on that connection fails: psycopg's rollback()
    with pytest.raises(Failed), db.tx() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() == pid
        raise Failed
    nested_reads()

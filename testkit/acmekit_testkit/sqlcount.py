"""Counting the SQL a piece of work sends, on either database, at the driver.

The CA's request path runs its statements on the driver's own cursor (repos/base.py),
past SQLAlchemy's statement events, so the count is taken below it: every connection a
pool opens while `counting()` is active is instrumented as it connects. On SQLite the
library's trace callback sees each statement the engine runs, `BEGIN` and `COMMIT`
included (one `BEGIN` is one transaction); on PostgreSQL (psycopg 3) a cursor class
counts `execute` and `executemany` (one per row, as the server runs them) and the
connection counts its commits, and the store's statements sent past the cursor
(`repos.base._PostgresStatements`, one each; those sent before one Sync one
transaction, unless all after the first are reads riding along with it, as the
handlers' first reads go with the request's nonce and account) are counted on the
connections seen. On PostgreSQL `round_trips` counts what waits for the server: each
statement on the cursor (BEGIN, COMMIT and ROLLBACK too; an `executemany` once, as
psycopg pipelines it), each sent past it, and each batch before one Sync (a statement's
preparation, once a connection, is not counted).
Connections opened before `counting()` began are not seen: call it before the store is
made.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa


@dataclass
class SqlCount:
    """Statements (without BEGIN/COMMIT/ROLLBACK) and transactions (commits) so far."""

    statements: int = 0
    transactions: int = 0
    round_trips: int = 0
    trips: list[tuple[str, ...]] = field(default_factory=list)  # each one's statements
    texts: list[str] = field(default_factory=list)
    # The driver's connections seen (PostgreSQL's, by their libpq connection).
    seen: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)

    def mark(self) -> tuple[int, int]:
        return self.statements, self.transactions

    def since(self, mark: tuple[int, int]) -> tuple[int, int]:
        return self.statements - mark[0], self.transactions - mark[1]

    def _trip(self, *texts: str) -> None:
        self.round_trips += 1
        self.trips.append(tuple(" ".join(t.split())[:120] for t in texts))

    def _seen(self, text: str) -> None:
        word = text.lstrip().split(None, 1)[0].upper() if text.strip() else ""
        if word in ("BEGIN", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE", "DEALLOCATE"):
            return
        if word == "COMMIT":
            self.transactions += 1
            return
        self.statements += 1
        self.texts.append(" ".join(text.split())[:120])


def _counting_cursor(count: SqlCount) -> type[psycopg.Cursor[Any]]:
    class Counting(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            count._seen(str(query))
            count._trip(str(query))
            return super().execute(query, params, **kwargs)

        def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
            count._trip(str(query))
            rows = list(params_seq)
            for _ in rows:
                count._seen(str(query))
            super().executemany(query, rows, **kwargs)

    return Counting


def _instrument(count: SqlCount, dbapi_conn: Any) -> None:
    if isinstance(dbapi_conn, sqlite3.Connection):
        dbapi_conn.set_trace_callback(count._seen)
        return
    if isinstance(dbapi_conn, psycopg.Connection):
        count.seen.add(dbapi_conn.pgconn)
        dbapi_conn.cursor_factory = _counting_cursor(count)
        commit = dbapi_conn.commit

        def counted_commit() -> None:
            # A commit with no transaction open sends nothing to the server.
            if dbapi_conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                count.transactions += 1
            commit()

        dbapi_conn.commit = counted_commit  # type: ignore[method-assign]


@contextmanager
def counting() -> Iterator[SqlCount]:
    """Count the SQL of every connection any pool opens meanwhile."""
    count = SqlCount()

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        _instrument(count, dbapi_conn)

    from acmekit.server.repos import base

    statements = base._PostgresStatements
    send = statements.send

    def counted_send(self: Any, sql: Any, params: Any) -> Any:
        if self._pg in count.seen:
            count._seen(sql[0].decode())
            count._trip(sql[0].decode())
        return send(self, sql, params)

    pipelined = statements.pipelined

    def counted_pipelined(self: Any, sent: Any) -> Any:
        # Before one Sync: one implicit transaction, committed there; reads riding along
        # with a lone statement (before or after it) leave it the lone statement's
        # (uncounted) transaction. Inside a BEGIN block (or one the batch begins) the
        # Sync commits nothing: its COMMIT is counted.
        if self._pg in count.seen:
            texts = [sql[0].decode() for sql, _ in sent]
            for text in texts:
                count._seen(text)
            count._trip(*texts)
            idle = self._pg.transaction_status == psycopg.pq.TransactionStatus.IDLE
            implicit = idle and texts[0].strip().upper() != "BEGIN"
            writes = 0
            for text in texts:
                writes += not text.lstrip().upper().startswith("SELECT")
            if implicit and writes > 1:
                count.transactions += 1
        return pipelined(self, sent)

    sa.event.listen(sa.pool.Pool, "connect", on_connect)
    statements.send = counted_send  # type: ignore[method-assign]
    statements.pipelined = counted_pipelined  # type: ignore[method-assign]
    try:
        yield count
    finally:
        statements.send = send  # type: ignore[method-assign]
        statements.pipelined = pipelined  # type: ignore[method-assign]
        sa.event.remove(sa.pool.Pool, "connect", on_connect)

"""What the CA's repositories share: the connection and cursor handling, and row helpers.

- Every state change that two processes could race on is one conditional UPDATE whose
  row count says who won (finalize claims, nonce redemption, revocation), so several
  server processes can share one PostgreSQL database.
- Times are stored as integer microseconds since the epoch (UTC): the same on both
  databases, cheap to index and compare, never a naive datetime.
- The statements of the request path (nonces, accounts, orders, authorizations,
  challenges, issuance, rate-limit buckets) are written once as SQL text and run on the
  driver's own cursor over a pooled connection (`Database.raw`): the same statements
  SQLAlchemy would send, without building and caching an expression per call, which cost
  about five times the statement itself on SQLite (docs/decisions.md). The rarely used
  statements stay in SQLAlchemy Core (`Database.tx`).
- A statement that is atomic on its own runs through `Database.once`: on PostgreSQL in
  autocommit, one round trip where a transaction costs three (BEGIN, the statement,
  COMMIT). Work of several statements that must commit together runs through `raw`, and
  a method that can join a caller's transaction takes it as `within` (finalize: the
  issuance limits, the claim and the serial's reservation in one).
"""

from __future__ import annotations

import json
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from acmekit.database import UNAVAILABLE, from_us
from acmekit.protocol.messages import Identifier, IdentifierType

E = TypeVar("E", bound=Enum)


def row_type(table: sa.Table) -> Any:
    """A named tuple of the table's columns, in order: what a raw SELECT of `cols` yields."""
    return namedtuple(f"{table.name}_row", [c.name for c in table.columns])


def cols(table: sa.Table, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + c.name for c in table.columns)


def members(enum: type[E]) -> Callable[[str], E]:
    """`enum(value)` as a dict lookup: rows are read on every request, and Enum's own
    call costs several times a lookup (a bad value still raises)."""
    by_value = {member.value: member for member in enum}

    def member(value: str) -> E:
        found = by_value.get(value)
        return enum(value) if found is None else found

    return member


identifier_type = members(IdentifierType)


def marks(n: int) -> str:
    return ", ".join("?" * n)


def opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def ids_json(ids: Sequence[Identifier]) -> str:
    return json.dumps([i.to_json() for i in ids])


def ids_load(text: str) -> tuple[Identifier, ...]:
    return tuple(Identifier(identifier_type(d["type"]), d["value"]) for d in json.loads(text))


def json_or_none(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


class Cursor:
    """A DBAPI cursor that takes SQL written with ? placeholders."""

    __slots__ = ("_cur", "_sql")

    def __init__(self, cur: Any, sql: Callable[[str], str]) -> None:
        self._cur = cur
        self._sql = sql

    def run(self, text: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        self._cur.execute(self._sql(text), params)
        return int(self._cur.rowcount)

    def many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(self._sql(text), rows)

    def one(self, text: str, params: Sequence[Any] = ()) -> Any:
        self._cur.execute(self._sql(text), params)
        return self._cur.fetchone()

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        self._cur.execute(self._sql(text), params)
        return list(self._cur.fetchall())


class Database:
    """Short transactions over one engine, in SQLAlchemy Core (`tx`) or on the driver's
    cursor (`raw`). All repositories of a store share one, and so its connections."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._qmark = engine.dialect.paramstyle == "qmark"
        self._sqlite = engine.dialect.name == "sqlite"
        self._local = threading.local()
        self.integrity: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError
        self._texts: dict[str, str] = {}

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def raw(self) -> Iterator[Cursor]:
        """One transaction through the driver's own cursor."""
        held = self._held()
        conn = held if held is not None else self.engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                yield Cursor(cur, self._sql)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cur.close()
        except UNAVAILABLE as exc:
            if held is None:
                self._drop_if_lost(conn, exc)
            raise
        finally:
            if held is None:
                conn.close()

    @contextmanager
    def once(self) -> Iterator[Cursor]:
        """For one statement, atomic on its own (or reads that need no common snapshot):
        on PostgreSQL in autocommit, one round trip instead of three (psycopg sends
        BEGIN and COMMIT as round trips of their own); on SQLite the same as `raw`, whose
        held connection commits without a round trip."""
        if self._sqlite:
            with self.raw() as held:
                yield held
            return
        conn = self.engine.raw_connection()
        try:
            dbapi = conn.dbapi_connection
            assert dbapi is not None
            dbapi.autocommit = True
            cur = conn.cursor()
            try:
                yield Cursor(cur, self._sql)
            finally:
                cur.close()
                if not dbapi.closed:  # a lost connection is dropped below, not reset
                    dbapi.autocommit = False
        except UNAVAILABLE as exc:
            self._drop_if_lost(conn, exc)
            raise
        finally:
            conn.close()

    def _drop_if_lost(self, conn: Any, exc: Any) -> None:
        """After a disconnect (the server restarted), drop this connection and every idle
        one of the pool, which died with it: the next checkout connects afresh. This, not
        a ping per checkout, is how the pool recovers (docs/decisions.md)."""
        if self.engine.dialect.is_disconnect(exc, conn.dbapi_connection, None):
            conn.invalidate(exc)
            self.engine.dispose()

    def _held(self) -> Any:
        """On SQLite, this thread's own connection, kept: a pool checkout costs three times
        a short statement there (docs/decisions.md). PostgreSQL's come from the pool."""
        if not self._sqlite:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.engine.raw_connection()
        return conn

    def _sql(self, text: str) -> str:
        """`text` (written with ? placeholders) in the driver's parameter style."""
        if self._qmark:
            return text
        found = self._texts.get(text)
        if found is None:
            found = self._texts[text] = text.replace("?", "%s")
        return found


class Repository:
    """A repository's access to the shared `Database`. Methods are short transactions;
    none reads the process's clock (the rate-limit buckets may read the database's)."""

    def __init__(self, db: Database) -> None:
        # Bound once here, not forwarded per call: the request path runs several a request.
        self._tx = db.tx
        self._raw = db.raw
        self._dialect = db.engine.dialect.name
        self._once = db.once
        self._postgres = not db._sqlite
        self._integrity = db.integrity

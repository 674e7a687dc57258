"""The one way acmekit opens a database and stores a time, for the CA and the fleet.

`sqlite:///FILE` gets WAL mode, `synchronous=NORMAL` and a busy timeout, so several
readers and one writer share the file; `postgresql://...` goes through psycopg 3 with a
pool. A database that cannot be reached, has dropped the connection or has no room
to write raises one of `UNAVAILABLE`: the callers answer "try again later" and leave the
work for recovery (docs/server.md, "Outages"). Times are integer microseconds since the
epoch (UTC): the same on both databases, cheap to index and compare, never a naive
datetime.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

# What an outage looks like, through SQLAlchemy or on the driver's own cursor (the store's
# request path): no server, a dropped connection, a full disk, a lock held too long.
# psycopg's OperationalError covers AdminShutdown and the other server-side disconnects.
UNAVAILABLE: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,  # no pooled connection came free in time
    psycopg.OperationalError,
    psycopg.InterfaceError,
    # The server ended a session idle inside a transaction (SQLSTATE 25P03, which
    # psycopg files under InternalError): the CT log sets that timeout itself
    # (`CtStore.end_stalled_sessions`), and its writer meets it on the driver's cursor.
    psycopg.errors.IdleInTransactionSessionTimeout,
    sqlite3.OperationalError,
)


def create_engine(
    url: str,
    *,
    pre_ping: bool = True,
    ping_idle: float | None = None,
    hide_parameters: bool = False,
) -> Engine:
    """An engine for `sqlite:///FILE` (WAL, busy timeout) or `postgresql://...`.
    `hide_parameters` keeps the values bound to a statement out of its errors' text
    (which is logged): for a store that writes private keys.
    `pre_ping=False` saves a round trip per checkout for a caller that drops the pool
    itself on a disconnect (the CA's store). `ping_idle` (seconds, with `pre_ping`
    False) pings only a connection that sat in the pool that long: a busy process pays
    no round trip per checkout, and one that was idle through a database restart still
    finds its dead connections before using them."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            pool_size=10,
            max_overflow=20,
            pool_pre_ping=pre_ping,
            hide_parameters=hide_parameters,
        )
        if ping_idle is not None and not pre_ping:
            _ping_when_idle(engine, ping_idle)
        return engine
    engine = sa.create_engine(url, connect_args={"timeout": 30}, hide_parameters=hide_parameters)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        _enter_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


@contextmanager
def synced(dbapi_conn: Any) -> Iterator[None]:
    """SQLite: the connection's commits inside the block sync the WAL before they return
    (`synchronous=FULL`), and those after it do not (NORMAL again). For the commits a
    promise made outside rests on (docs/decisions.md, "Synced commits"): under NORMAL a
    commit survives the process's crash but not the machine's, until the next
    checkpoint; one sync makes every earlier commit of the file durable as well. The
    level cannot change inside a transaction, so the block must begin outside one."""
    if dbapi_conn.in_transaction:
        raise RuntimeError("a synced commit must begin its own transaction")
    dbapi_conn.execute("PRAGMA synchronous=FULL")
    try:
        yield
    finally:
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")


@contextmanager
def durable_begin(engine: Engine) -> Iterator[sa.Connection]:
    """`engine.begin()` whose commit is on disk when the block ends, on SQLite too
    (`synced`); PostgreSQL's commits are already (synchronous_commit on)."""
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            with conn.begin():
                yield conn
            return
        with synced(conn.connection.driver_connection), conn.begin():
            yield conn


def _ping_when_idle(engine: Engine, after: float) -> None:
    """SQLAlchemy's custom pessimistic disconnect handling: a checkout listener that
    raises DisconnectionError makes the pool drop that connection and take another."""

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < after:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc
        if not alive:
            raise sa.exc.DisconnectionError("the connection did not answer a ping")


def _enter_wal(cur: Any, attempts: int = 200) -> None:
    """Switch the file to WAL once. The switch needs the file to itself, and SQLite
    answers "database is locked" at once instead of waiting out the busy timeout when
    another connection (a second process starting on a new file) holds it, so wait here;
    a file already in WAL needs no switch."""
    for attempt in range(attempts):
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def to_us(t: datetime) -> int:
    """A timezone-aware time as integer microseconds since the epoch."""
    return int(t.timestamp() * 1_000_000)


def from_us(us: int, _at: Any = datetime.fromtimestamp, _utc: Any = UTC) -> datetime:
    made: datetime = _at(us / 1_000_000, _utc)  # bound, positional: several a read
    return made

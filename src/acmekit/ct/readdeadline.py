"""A deadline on each of the log's PostgreSQL reads, kept by the client.

The read engine's `statement_timeout` is the server's: when the server's reply never
comes (a half-open connection, a host gone, a peer that ACKs but never answers), the
reading thread waits in the driver for ever, holding one of the app's few read threads,
and once all are stuck every read queues. TCP keepalive and `tcp_user_timeout` do not
end such a wait: a peer that still ACKs is alive to TCP.

So each read (`BoundedReads.connect()`: the pool's checkout with its ping, the
statements, the return with its rollback) gets a deadline, READ_DEADLINE seconds after
it begins. A watcher thread, when one passes, shuts the socket of every connection
the read holds: the blocked driver call returns with an error that the store's callers
see as an outage (a 503 with Retry-After), the thread is free, and the pool discards
the connection (its ping fails at the next checkout, or the checkin's rollback). The
deadline is above the server's `statement_timeout`, so a slow statement on a live
connection still ends in the server's cancel and keeps its connection.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


class _Read:
    """One read in progress: when it must be over, and the driver connections it holds."""

    __slots__ = ("conns", "deadline", "expired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conns: list[Any] = []
        self.expired = False


class ReadDeadlines:
    """The reads in progress, and one daemon watcher thread that cuts those past their
    deadline. Every read has the same length, so the reads begun earliest end earliest:
    the dict's insertion order is the order of the deadlines, and a read's start needs
    no word to the watcher (it sleeps at most `seconds`, and no new deadline is nearer)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._open: dict[int, _Read] = {}
        self._local = threading.local()
        self._watcher: threading.Thread | None = None

    def begin(self) -> _Read:
        read = _Read(time.monotonic() + self.seconds)
        with self._lock:
            self._open[id(read)] = read
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="ct-read-deadline", daemon=True
                )
                self._watcher.start()
        self._local.read = read
        return read

    def end(self, read: _Read) -> None:
        self._local.read = None
        with self._lock:
            self._open.pop(id(read), None)

    def attach(self, dbapi_conn: Any) -> None:
        """`dbapi_conn` is the current read's until `detach`; past its deadline, cut at once."""
        read: _Read | None = getattr(self._local, "read", None)
        if read is None:
            return
        with self._lock:
            if read.expired:
                _cut(dbapi_conn)
            elif dbapi_conn not in read.conns:
                read.conns.append(dbapi_conn)

    def detach(self, dbapi_conn: Any) -> None:
        """Before the connection goes back to the pool, where another read may take it."""
        read: _Read | None = getattr(self._local, "read", None)
        if read is None:
            return
        with self._lock:
            if dbapi_conn in read.conns:
                read.conns.remove(dbapi_conn)

    def expired(self) -> bool:
        read: _Read | None = getattr(self._local, "read", None)
        return read is not None and read.expired

    def _watch(self) -> None:
        while True:
            with self._lock:
                wait = self.seconds
                while self._open:
                    first = next(iter(self._open.values()))
                    wait = first.deadline - time.monotonic()
                    if wait > 0:
                        break
                    del self._open[id(first)]
                    first.expired = True
                    for conn in first.conns:
                        _cut(conn)
            time.sleep(max(wait, 0.01))


def _cut(dbapi_conn: Any) -> None:
    """Shut the connection's socket down: a thread blocked reading it returns (EOF), and
    the connection is of no more use. A dup of the descriptor, so that the driver's own
    stays open and is closed by the driver."""
    try:
        fd = dbapi_conn.pgconn.socket
        sock = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
    except Exception:  # closed already: nothing to cut
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


class BoundedReads:
    """The read engine with a deadline on each `connect()` block. The engine has no
    `pool_pre_ping`: its checkout listener pings, with the connection attached to the
    read, so that a ping on a half-open connection is cut too."""

    def __init__(self, engine: Engine, seconds: float) -> None:
        self.engine = engine
        self.deadlines = ReadDeadlines(seconds)
        deadlines = self.deadlines

        # first of the connect listeners: the session's settings are statements too
        @sa.event.listens_for(engine, "connect", insert=True)
        def _connected(dbapi_conn: Any, _record: Any) -> None:
            deadlines.attach(dbapi_conn)

        @sa.event.listens_for(engine, "checkout")
        def _checked_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            deadlines.attach(dbapi_conn)
            try:
                alive = engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:
                if deadlines.expired():  # not for another try: the read is over
                    raise sa.exc.TimeoutError("the database did not answer in time") from exc
                raise sa.exc.DisconnectionError(str(exc)) from exc
            if not alive:
                raise sa.exc.DisconnectionError("the connection did not answer a ping")

        @sa.event.listens_for(engine, "checkin")
        def _checked_in(dbapi_conn: Any, _record: Any) -> None:
            if dbapi_conn is not None:
                deadlines.detach(dbapi_conn)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        read = self.deadlines.begin()
        try:
            with self.engine.connect() as conn:
                yield conn
        finally:
            self.deadlines.end(read)

    def dispose(self) -> None:
        self.engine.dispose()

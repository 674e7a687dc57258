"""The store's own prepared statements on PostgreSQL (repos/base.py's `_PostgresStatements`)
when the server's copy of one is gone or stale: a schema change made by another
connection (a migration run while the CA serves), or psycopg's own DEALLOCATE ALL on a
connection the store shares with SQLAlchemy's pool. psycopg's cursor forgot a prepared
statement whose execution failed and prepared it afresh later; the store must not keep
failing on a name the server no longer has, or on a plan it can no longer use."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from acmekit.server.records import AuthorizationRecord
from acmekit.server.store import Store
from acmekit_testkit.pendingorders import order_with_two_challenges, stored_account

pytestmark = pytest.mark.postgres


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
    # as psycopg's cursor: at most the one execution that found the plan stale fails
    assert _failed_reads(pg_store, psycopg.errors.FeatureNotSupported) <= 1


def _failed_reads(store: Store, error: type[Exception]) -> int:
    """How many of eight reads of the bucket "k" (tat 7) failed with `error`."""
    failed = 0
    for _ in range(8):
        try:
            assert store.buckets.tat("k") == 7
        except error:
            failed += 1
    return failed


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
    assert _failed_reads(pg_store, psycopg.errors.InvalidSqlStatementName) <= 1


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


# A challenge's start, pipelined (repos/orders.py start_challenge): the authorization's
# lock and the UPDATE before one Sync, on this thread's kept connection.

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _authz(store: Store, n: int) -> AuthorizationRecord:
    if store.accounts.account("acct") is None:
        stored_account(store, NOW)
    return order_with_two_challenges(store, n, NOW)


def _status(store: Store, challenge_id: str) -> str:
    with store.db.once() as c:
        return str(c.one("SELECT status FROM challenges WHERE id = ?", (challenge_id,))[0])


def _kept_pid(store: Store) -> int:
    with store.db.once() as c:
        return int(c.one("SELECT pg_backend_pid()")[0])


def _when_waiting(url: str, pid: int, then: Callable[[psycopg.Connection[Any]], object]) -> None:
    """Once the backend `pid` waits on a lock, `then(connection)` on another connection."""
    with _other_connection(url) as conn:
        for _ in range(500):
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row is not None and row[0] == "Lock":
                break
            time.sleep(0.01)
        else:
            raise AssertionError("never waited on the lock")
        then(conn)


def test_a_start_waiting_on_the_lock_sees_what_the_other_start_committed(
    pg_url: str, pg_store: Store
) -> None:
    """Two starts of one authorization's challenges at once: the second, waiting on the
    authorization's lock, runs its UPDATE on a snapshot taken after the first committed
    (RFC 8555 §7.1.6: one attempt decides the authorization)."""
    for n in range(8):  # unprepared, then prepared
        authz = _authz(pg_store, n)
        http, dns = (ch.id for ch in authz.challenges)
        pid = _kept_pid(pg_store)
        with _other_connection(pg_url) as first:
            first.autocommit = False
            first.execute("SELECT 1 FROM authorizations WHERE id = %s FOR UPDATE", (authz.id,))
            first.execute(
                "UPDATE challenges SET status = 'processing' WHERE id = %s AND status = 'pending'",
                (http,),
            )
            committer = threading.Thread(
                target=_when_waiting, args=(pg_url, pid, lambda _c: first.commit())
            )
            committer.start()
            try:
                assert not pg_store.orders.start_challenge(dns, NOW, "u")
            finally:
                committer.join()
        assert _status(pg_store, http) == "processing"
        assert _status(pg_store, dns) == "pending"


def _start_while_locked(
    pg_url: str, store: Store, n: int, then: Callable[[psycopg.Connection[Any], int], object]
) -> tuple[str, str, BaseException | None]:
    """A start that waits on its authorization's lock, held by another connection, and
    `then(other, pid)` done once it waits; the lock is then let go. The challenges' ids
    and what the start raised."""
    authz = _authz(store, n)
    http, dns = (ch.id for ch in authz.challenges)
    pid = _kept_pid(store)
    raised: BaseException | None = None
    with _other_connection(pg_url) as holder:
        holder.autocommit = False
        holder.execute("SELECT 1 FROM authorizations WHERE id = %s FOR UPDATE", (authz.id,))
        helper = threading.Thread(target=_when_waiting, args=(pg_url, pid, lambda c: then(c, pid)))
        helper.start()
        try:
            store.orders.start_challenge(http, NOW, "u")
        except BaseException as exc:
            raised = exc
        finally:
            helper.join()
            holder.rollback()
    return http, dns, raised


@pytest.mark.parametrize("prepared", [False, True])
def test_a_start_whose_connection_is_terminated_fails_as_unavailable_then_the_next_works(
    pg_url: str, pg_store: Store, prepared: bool
) -> None:
    from acmekit.database import UNAVAILABLE

    if prepared:
        for n in range(100, 107):
            assert pg_store.orders.start_challenge(_authz(pg_store, n).challenges[0].id, NOW, "u")
    http, dns, raised = _start_while_locked(
        pg_url, pg_store, 1, lambda c, pid: c.execute("SELECT pg_terminate_backend(%s)", (pid,))
    )
    assert isinstance(raised, UNAVAILABLE), raised
    assert _status(pg_store, http) == "pending"  # rolled back with the connection
    assert pg_store.orders.start_challenge(dns, NOW, "u")
    assert _status(pg_store, dns) == "processing"


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_cancelled_start_leaves_nothing_and_the_connection_usable(
    pg_url: str, pg_store: Store, how: str
) -> None:
    for n in range(100, 107):  # prepared
        assert pg_store.orders.start_challenge(_authz(pg_store, n).challenges[0].id, NOW, "u")
    if how == "timeout":
        with pg_store.db.once() as c:
            c.run("SET statement_timeout = 300")
        then: Callable[[psycopg.Connection[Any], int], object] = lambda c, pid: None  # noqa: E731
    else:
        then = lambda c, pid: c.execute("SELECT pg_cancel_backend(%s)", (pid,))  # noqa: E731
    pid = _kept_pid(pg_store)
    http, dns, raised = _start_while_locked(pg_url, pg_store, 1, then)
    assert isinstance(raised, psycopg.errors.QueryCanceled), raised
    assert _kept_pid(pg_store) == pid  # the same connection, not given up
    dbapi = pg_store.db._local.dbapi
    assert dbapi.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert _status(pg_store, http) == "pending"
    assert pg_store.orders.start_challenge(dns, NOW, "u")


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT handled as in the CA's own process, by Python's default handler, which
    raises KeyboardInterrupt in the main thread. A test worker may have it otherwise:
    pytest-xdist's workers start with SIGINT ignored (the signal never interrupts a
    wait), and an event loop's `remove_signal_handler` in an earlier test of the same
    worker puts the default back; which one a test met depended on the files' order."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_during_a_start_leaves_the_connection_usable(pg_url: str, pg_store: Store) -> None:
    """Ctrl-C while a start waits: psycopg's wait cancels the statement on the server,
    as its cursor did, and the thread's connection serves the next request."""
    for n in range(100, 107):  # prepared
        assert pg_store.orders.start_challenge(_authz(pg_store, n).challenges[0].id, NOW, "u")
    main = threading.get_ident()
    http, dns, raised = _start_while_locked(
        pg_url, pg_store, 1, lambda c, pid: signal.pthread_kill(main, signal.SIGINT)
    )
    assert isinstance(raised, KeyboardInterrupt), raised
    assert _status(pg_store, http) == "pending"
    assert pg_store.orders.start_challenge(dns, NOW, "u")


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_during_a_lone_statement_leaves_the_connection_usable(
    pg_url: str, pg_store: Store
) -> None:
    pid = _kept_pid(pg_store)
    main = threading.get_ident()
    with _other_connection(pg_url) as holder:
        holder.autocommit = False
        holder.execute("LOCK TABLE rate_buckets")
        helper = threading.Thread(
            target=_when_waiting,
            args=(pg_url, pid, lambda c: signal.pthread_kill(main, signal.SIGINT)),
        )
        helper.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                pg_store.buckets.tat("k")
        finally:
            helper.join()
            holder.rollback()
    assert pg_store.buckets.tat("k") is None
    assert _kept_pid(pg_store) == pid


_VALUES = [
    None,
    b"",
    b"\x00\xff" * 3,
    bytearray(b"ab"),
    memoryview(b"cd"),
    datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5),
    datetime(1, 1, 1, tzinfo=UTC),
    timedelta(days=-1, microseconds=1),
    0,
    -1,
    2**15,
    2**31,
    2**63 - 1,
    -(2**63),
    2**63,
    10**40,
    True,
    1.5,
    float("inf"),
    Decimal("1.10"),
    Decimal("NaN"),
    "",
    "é \u0661 漢 \U0001f600 \u200b",
    "a\x00b",
    "\udcff",
    [1, 2],
    ["a", None],
    {"a": 1},
    uuid.UUID(int=5),
    object(),
]


@pytest.mark.parametrize(
    "value", _VALUES, ids=[f"{i}-{type(v).__name__}" for i, v in enumerate(_VALUES)]
)
def test_a_parameter_comes_back_as_psycopgs_cursor_gives_it(
    pg_url: str, pg_store: Store, value: Any
) -> None:
    """Each parameter through the store's statements, unprepared and prepared, against
    psycopg's cursor on its own connection: the same value of the same type, or an
    error of the same class."""

    def outcome(run: Callable[[], Any]) -> tuple[str, Any]:
        try:
            row = run()
        except Exception as exc:
            return ("error", type(exc))
        return ("row", [(type(v), v if v == v else "nan") for v in row])

    with _other_connection(pg_url) as conn:
        expected = outcome(lambda: conn.execute("SELECT %s", (value,)).fetchone())
        with pg_store.db.once() as c:
            for _ in range(8):
                assert outcome(lambda: c.one("SELECT ?", (value,))) == expected
        # and the connection serves on
        assert pg_store.buckets.tat("k") is None


def test_migrations_run_on_the_stores_engine_while_its_statements_are_prepared(
    pg_store: Store,
) -> None:
    """0009 down and up again through the store's own pool, whose connections hold the
    store's prepared statements (the order list's among them): they serve on."""
    from acmekit import migrate
    from acmekit.migrate import SERVER

    _authz(pg_store, 1)
    for _ in range(8):
        assert [i for _, i in pg_store.orders.account_orders("acct", NOW, None, 10)] == ["order-1"]
    with pg_store.db.once() as outer:  # the thread's connection busy: the pool's serve
        outer.one("SELECT 1")
        for _ in range(8):
            assert pg_store.orders.account_orders("acct", NOW, None, 10)
    migrate.downgrade(pg_store.engine, SERVER, "0008")
    migrate.upgrade(pg_store.engine, SERVER)
    for _ in range(3):
        assert [i for _, i in pg_store.orders.account_orders("acct", NOW, None, 10)] == ["order-1"]
        with pg_store.db.once() as outer:
            outer.one("SELECT 1")
            assert pg_store.orders.account_orders("acct", NOW, None, 10)


def test_a_start_of_a_challenge_that_does_not_exist_is_refused_cleanly(pg_store: Store) -> None:
    _authz(pg_store, 1)
    for _ in range(8):  # unprepared, then prepared
        assert not pg_store.orders.start_challenge("no-such-challenge", NOW, "u")
        dbapi = pg_store.db._local.dbapi
        assert dbapi.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_every_connection_terminated_then_the_store_prepares_afresh(
    pg_url: str, pg_store: Store
) -> None:
    """A restart of the server, as the store sees it: its connections end with their
    prepared statements. The first request fails as unavailable (no ping per
    checkout), the next ones run on new connections, prepared anew."""
    from acmekit.database import UNAVAILABLE

    with pg_store.db.once() as c:
        c.run("INSERT INTO rate_buckets (key, tat) VALUES (?, ?)", ("k", 7))
    for _ in range(8):
        assert pg_store.buckets.tat("k") == 7
    old = _kept_pid(pg_store)
    with _other_connection(pg_url) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(UNAVAILABLE):
        pg_store.buckets.tat("k")
    for _ in range(8):
        assert pg_store.buckets.tat("k") == 7
    assert _kept_pid(pg_store) != old
    with pg_store.db.once() as c:
        names = c.all("SELECT name FROM pg_prepared_statements")
    assert [n for (n,) in names if n.startswith("_acmekit_")]


def test_many_statement_shapes_past_the_bound_still_run_right(pg_store: Store) -> None:
    dbapi_max = 100  # psycopg's prepared_max, the store's bound per connection
    for shape in range(3 * dbapi_max):
        for _ in range(6):
            with pg_store.db.once() as c:
                assert c.one(f"SELECT ?::int + {shape}", (1,)) == (1 + shape,)
    with pg_store.db.once() as c:
        (count,) = c.one("SELECT count(*) FROM pg_prepared_statements")
        assert count <= dbapi_max
        assert c.one("SELECT ?::int + 7", (1,)) == (8,)


def test_threads_sharing_the_pool_keep_every_prepared_statement(pg_store: Store) -> None:
    """Connections pass between threads through the pool: a nested block's, given back,
    becomes another thread's kept one, or serves SQLAlchemy's transactions, some of
    which fail (psycopg's rollback()). No statement of the store fails."""
    db = pg_store.db
    with db.once() as c:
        c.run("INSERT INTO rate_buckets (key, tat) VALUES (?, ?)", ("k", 7))
    errors: list[BaseException] = []

    class Failed(Exception):
        pass

    def work(n: int) -> None:
        try:
            for i in range(60):
                assert pg_store.buckets.tat("k") == 7
                with db.once() as outer:
                    outer.one("SELECT 1")
                    with db.once() as inner:
                        assert inner.one("SELECT tat FROM rate_buckets WHERE key = ?", ("k",))
                with db.tx() as conn:
                    assert conn.execute(sa.text("SELECT tat FROM rate_buckets")).one()
                if i % 7 == n % 7:
                    with pytest.raises(Failed), db.tx() as conn:
                        conn.execute(sa.text("SELECT tat FROM rate_buckets")).one()
                        raise Failed
                if i % 20 == 19:
                    db._drop_held()  # a new kept connection, from the pool
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


class _CtrlCAfterSend:
    """psycopg's wait on one connection's statements, with a KeyboardInterrupt raised
    at its `at`-th call, before it takes the generator: a Ctrl-C landing after a
    statement (or a PREPARE, or a pipeline) was sent and before psycopg's wait, which
    would cancel it and read on, took over. Its other calls are psycopg's wait."""

    def __init__(self, wait: Callable[..., Any], at: int = 1) -> None:
        self._real, self._at, self.calls = wait, at, 0

    def __call__(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self._at:
            raise KeyboardInterrupt
        return self._real(gen, *args, **kwargs)


def _reads_right(store: Store) -> None:
    """Every kind of statement on the pool's connections gives its own result."""
    for _ in range(8):  # unprepared, then prepared
        assert store.buckets.tat("k") == 7
        assert store.buckets.tat("none") is None
        with store.db.once() as outer:
            assert outer.one("SELECT ?::int + 1", (1,)) == (2,)
            with store.db.once() as inner:  # a connection of the pool's
                assert inner.one("SELECT tat FROM rate_buckets WHERE key = ?", ("k",)) == (7,)
        with store.db.tx() as conn:
            assert conn.execute(sa.text("SELECT tat FROM rate_buckets")).scalar() == 7


@pytest.mark.parametrize("where", ["statement", "transaction", "nested", "prepare", "evicting"])
def test_ctrl_c_after_a_send_gives_the_connection_up_and_the_next_use_reads_right(
    pg_store: Store, where: str
) -> None:
    """A Ctrl-C between a statement's send and psycopg's wait leaves its results unread:
    the connection goes (closed, replaced), never to serve the next request with them.
    On this thread's kept connection (a lone statement, one inside a transaction, the
    PREPARE of a statement at its threshold's use, and one that gives up the least
    recently used one) and on a nested block's, which goes back to the pool."""
    db = pg_store.db
    with db.once() as c:
        c.run("INSERT INTO rate_buckets (key, tat) VALUES (?, ?)", ("k", 7))
    pid = _kept_pid(pg_store)
    kept = db._statements_for(db._local.dbapi)
    if where == "evicting":
        kept._most = 2  # the bound reached: the next preparation gives one up
        for _ in range(6):
            assert pg_store.buckets.tat("k") == 7
            with db.once() as c:
                assert c.one("SELECT ?::int + 2", (1,)) == (3,)
    if where in ("prepare", "evicting"):
        for _ in range(5):  # the sixth use prepares
            with db.once() as c:
                assert c.one("SELECT ?::int * 3", (2,)) == (6,)
    statements = kept
    if where == "nested":
        with db.once() as outer:
            outer.one("SELECT 1")
            with db.once() as inner:  # the pool's one idle connection, met again below
                inner.one("SELECT 1")
        (statements,) = [s for s in db._statements.values() if s is not kept]
    hook = _CtrlCAfterSend(statements._wait)
    statements._wait = hook
    with pytest.raises(KeyboardInterrupt):
        if where == "nested":
            with db.once() as outer:
                outer.one("SELECT 1")
                with db.once() as inner:
                    inner.one("SELECT tat FROM rate_buckets WHERE key = ?", ("k",))
        elif where == "transaction":
            with db.raw() as c:
                c.run("UPDATE rate_buckets SET tat = 8 WHERE key = ?", ("k",))
        elif where in ("prepare", "evicting"):
            with db.once() as c:
                c.one("SELECT ?::int * 3", (2,))
        else:
            pg_store.buckets.tat("k")
    assert hook.calls == 1
    _reads_right(pg_store)
    if where != "nested":
        assert _kept_pid(pg_store) != pid  # given up, not kept with results unread

"""The store's statements on PostgreSQL, sent past psycopg's cursor (repos/base.py's
`_PostgresStatements`): prepared by the store under names of its own, at the use after
the connection's `prepare_threshold`, kept across a ROLLBACK, and with the driver's own
results: rows as tuples of the same Python types, row counts, errors of the same classes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from acmekit.server.store import Store
from acmekit_testkit.pendingorders import order_with_two_challenges, stored_account

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

pytestmark = pytest.mark.postgres


def _prepared(store: Store) -> list[tuple[str, str]]:
    """The prepared statements of this thread's kept connection: (name, text)."""
    with store.db.once() as c:
        return [
            (str(n), str(t)) for n, t in c.all("SELECT name, statement FROM pg_prepared_statements")
        ]


def test_a_statement_is_prepared_by_the_store_after_the_threshold(pg_store: Store) -> None:
    acct = stored_account(pg_store, NOW, ("mailto:ops@example.test",))
    text = pg_store.accounts._by_id.replace("?", "$1")
    pg_store.accounts.account(acct.id)
    dbapi = pg_store.db._local.dbapi
    assert dbapi is not None
    assert not [t for _, t in _prepared(pg_store) if t == text]  # one use: not yet
    for _ in range(5):  # psycopg's default threshold, 5: prepared at the sixth use
        assert pg_store.accounts.account(acct.id) == acct
    mine = [n for n, t in _prepared(pg_store) if t == text]
    assert len(mine) == 1 and mine[0].startswith("_acmekit_")
    # psycopg prepares nothing more on the store's connections (its DEALLOCATE ALL
    # after a ROLLBACK would take the store's along)
    assert dbapi.prepare_threshold is None
    assert not [n for n, _ in _prepared(pg_store) if n.startswith("_pg3_")]


def test_prepared_statements_survive_a_rolled_back_transaction(pg_store: Store) -> None:
    acct = stored_account(pg_store, NOW, ("mailto:ops@example.test",))
    # psycopg prepared statements of its own on the connection before the store took it:
    # the pool renewed, one connection made and given back, which the store takes next
    pg_store.engine.dispose()
    fairy: Any = pg_store.engine.raw_connection()
    cur = fairy.dbapi_connection.cursor()
    for _ in range(8):
        cur.execute("SELECT count(*) FROM accounts WHERE id = %s", ("x",))
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    cur.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '_pg3_%%'")
    assert cur.fetchone()[0] >= 1
    cur.close()
    fairy.dbapi_connection.commit()  # as `Database.tx` ends: checked in idle, so kept
    fairy.close()
    for _ in range(8):
        assert pg_store.accounts.account(acct.id) == acct
    with pg_store.db.once() as c:
        assert c.one("SELECT pg_backend_pid()")[0] == pid
    assert [n for n, _ in _prepared(pg_store) if n.startswith("_acmekit_")]

    class Failed(Exception):
        pass

    with pytest.raises(Failed), pg_store.db.raw() as c:
        c.one("SELECT 1")
        raise Failed  # ROLLBACK on the kept connection
    for _ in range(3):
        assert pg_store.accounts.account(acct.id) == acct
    assert [n for n, _ in _prepared(pg_store) if n.startswith("_acmekit_")]


def test_rows_counts_and_errors_are_the_drivers(pg_store: Store) -> None:
    with pg_store.db.once() as c:
        for _ in range(7):  # unprepared, then prepared: the same either way
            row = c.one(
                "SELECT ?::bigint, ?::text, ?::boolean, ?::bytea, CAST(NULL AS text)",
                (2**40, "é", True, b"\x00\xff"),
            )
            assert row == (2**40, "é", True, b"\x00\xff", None)
            assert type(row) is tuple
            assert c.one("SELECT 1 WHERE false") is None
            assert c.all("SELECT g FROM generate_series(1, ?) g", (3,)) == [(1,), (2,), (3,)]
            assert c.run("UPDATE settings SET value = value WHERE false") == 0
            assert c.run("SELECT g FROM generate_series(1, ?) g", (4,)) == 4
    stored_account(pg_store, NOW, ("mailto:ops@example.test",))
    with pg_store.db.once() as c:
        for _ in range(7):
            with pytest.raises(psycopg.errors.UniqueViolation):
                c.run("INSERT INTO used_nonces (nonce, issued) VALUES (?, ?)", ("n", 1))
                c.run("INSERT INTO used_nonces (nonce, issued) VALUES (?, ?)", ("n", 1))
            c.run("DELETE FROM used_nonces WHERE nonce = ?", ("n",))
        with pytest.raises(psycopg.ProgrammingError):
            c.one("SELECT ?", ())
        with pytest.raises(psycopg.ProgrammingError):  # no rows to fetch, as fetchone
            c.one("UPDATE settings SET value = value WHERE false")
        assert c.run("") == -1
    # an error inside a transaction rolls it back whole, as before
    with pytest.raises(psycopg.errors.UniqueViolation), pg_store.db.raw() as c:
        c.run("INSERT INTO used_nonces (nonce, issued) VALUES (?, ?)", ("m", 1))
        c.run("INSERT INTO used_nonces (nonce, issued) VALUES (?, ?)", ("m", 1))
    with pg_store.db.once() as c:
        assert c.one("SELECT count(*) FROM used_nonces WHERE nonce = ?", ("m",)) == (0,)


def _round_trips(store: Store, tmp_path: Path, work: Callable[[], object]) -> int:
    """The messages after which the client waits for the server (an extended-protocol
    Sync, or a simple Query) that `work` sends on this thread's kept connection."""
    dbapi = store.db._local.dbapi
    assert dbapi is not None
    pgconn = dbapi.pgconn
    path = tmp_path / "trace"
    with path.open("w") as f:
        pgconn.trace(f.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            work()
        finally:
            pgconn.untrace()
    sent = [line.split("\t") for line in path.read_text().splitlines()]
    return sum(1 for fields in sent if fields[0] == "F" and fields[2] in ("Sync", "Query"))


def test_a_challenge_starts_in_one_round_trip_as_one_transaction(
    pg_store: Store, tmp_path: Path
) -> None:
    stored_account(pg_store, NOW, ("mailto:ops@example.test",))
    for n in range(8):  # unprepared at first, prepared after the threshold: one round trip
        authz = order_with_two_challenges(pg_store, n, NOW)
        http, dns = (c.id for c in authz.challenges)
        assert (
            _round_trips(
                pg_store, tmp_path, partial(pg_store.orders.start_challenge, http, NOW, "u")
            )
            <= 2
        )
        if n >= 6:
            assert (
                _round_trips(
                    pg_store, tmp_path, partial(pg_store.orders.start_challenge, dns, NOW, "u")
                )
                == 1
            )
        # RFC 8555 §7.1.6: the other challenge of the authorization does not start
        assert not pg_store.orders.start_challenge(dns, NOW, "u")
        with pg_store.db.once() as c:
            assert c.one("SELECT status FROM challenges WHERE id = ?", (http,)) == ("processing",)
            assert c.one("SELECT status FROM challenges WHERE id = ?", (dns,)) == ("pending",)
        assert (
            pg_store.db._local.dbapi.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        )


def test_a_failed_start_leaves_nothing_and_the_connection_usable(pg_store: Store) -> None:
    stored_account(pg_store, NOW, ("mailto:ops@example.test",))
    authz = order_with_two_challenges(pg_store, 1, NOW)
    http = authz.challenges[0].id
    with pg_store.db.once() as c:  # the UPDATE fails: a value too long for its column
        c.run("ALTER TABLE challenges ADD CONSTRAINT short_uri CHECK (length(account_uri) < 5)")
    for _ in range(7):
        with pytest.raises(psycopg.errors.CheckViolation):
            pg_store.orders.start_challenge(http, NOW, "https://ca.example/acct/1")
        dbapi = pg_store.db._local.dbapi
        assert dbapi.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with pg_store.db.once() as c:
            assert c.one("SELECT status FROM challenges WHERE id = ?", (http,)) == ("pending",)
    assert pg_store.orders.start_challenge(http, NOW, "u")


HOT = "SELECT tat FROM rate_buckets WHERE key = ?"  # the bucket read's text


def _shapes(store: Store, first: int, count: int) -> None:
    """`count` texts of a client's choosing, each used past the threshold: prepared."""
    for shape in range(first, first + count):
        for _ in range(6):
            with store.db.once() as c:
                assert c.one(f"SELECT ?::int + {shape}", (1,)) == (1 + shape,)


def _server_side(store: Store) -> tuple[int, bool]:
    """The kept connection's prepared statements on the server: how many, and whether
    the bucket read is one of them."""
    texts = [t for _, t in _prepared(store)]
    return len(texts), HOT.replace("?", "$1") in texts


def test_past_the_bound_the_least_recently_used_statement_is_given_up(
    pg_store: Store, tmp_path: Path
) -> None:
    """More statement shapes than `prepared_max` (100) on one connection, taking the
    room first: the hot statement is still prepared (the least recently used shapes
    are deallocated on the server), stays prepared while it is used, and the server
    holds no more than the bound."""
    most = 100
    with pg_store.db.once() as c:
        c.run("INSERT INTO rate_buckets (key, tat) VALUES (?, ?)", ("k", 7))
    _shapes(pg_store, 0, most + 20)
    assert _server_side(pg_store)[0] <= most
    for _ in range(6):
        assert pg_store.buckets.tat("k") == 7
    count, hot = _server_side(pg_store)
    assert hot and count <= most
    for start in range(most + 20, 3 * most, 10):  # kept while in use among new shapes
        _shapes(pg_store, start, 10)
        assert pg_store.buckets.tat("k") == 7
        count, hot = _server_side(pg_store)
        assert hot and count <= most
    # a shape's preparation that gives another up: no round trip of its own (the
    # PREPARE's and the statement's, as at any preparation)
    for _ in range(5):
        with pg_store.db.once() as c:
            c.one("SELECT ?::int - 1", (1,))

    def sixth() -> None:
        with pg_store.db.once() as c:
            assert c.one("SELECT ?::int - 1", (1,)) == (0,)

    # (a libpq older than 17 has no Close: its DEALLOCATE goes with a Sync of its own)
    assert _round_trips(pg_store, tmp_path, sixth) == (
        2 if psycopg.capabilities.has_send_close_prepared() else 3
    )
    assert _server_side(pg_store)[0] <= most


def test_a_pipeline_longer_than_the_bound_keeps_its_statements_until_sent(
    pg_url: str,
) -> None:
    """With room for one prepared statement, a pipeline of two, each prepared at its
    first use: the second's preparation does not give up the first before the first is
    sent. The bound holds again at the next preparation."""
    from acmekit.server.repos.base import _PostgresStatements, _translated

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.prepared_max = 1
        conn.prepare_threshold = 0  # prepared at the first use
        statements = _PostgresStatements(conn)  # which takes both
        conn.prepare_threshold = None  # psycopg's own: off, as `Database` has it
        one, two = _translated("SELECT ?::int + 1"), _translated("SELECT ?::int + 2")
        for n in range(3):
            results = statements.pipelined([(one, (n,)), (two, (n,))])
            assert [statements.rows(r, True) for r in results] == [(n + 1,), (n + 2,)]
        three = _translated("SELECT ?::int + 3")
        assert statements.rows(statements.send(three, (1,)), True) == (4,)
        (count,) = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        assert count == 1


def test_a_text_met_after_many_used_once_is_still_prepared(pg_store: Store) -> None:
    """Texts counted towards preparation are kept up to a bound (`USES_KEPT`), the least
    recently counted given up: texts a client's requests met once each cannot keep a
    later hot one from being counted and prepared."""
    from acmekit.server.repos.base import _PostgresStatements

    with pg_store.db.once() as c:
        c.run("INSERT INTO rate_buckets (key, tat) VALUES (?, ?)", ("k", 7))
        for shape in range(_PostgresStatements.USES_KEPT + 10):
            assert c.one(f"SELECT ?::int + {shape}", (1,)) == (1 + shape,)
    for _ in range(6):
        assert pg_store.buckets.tat("k") == 7
    assert _server_side(pg_store)[1]


@pytest.mark.parametrize("close", ["protocol", "deallocate"])
def test_giving_up_names_the_server_lost_fails_no_statement(pg_store: Store, close: str) -> None:
    """The server dropped the connection's prepared statements (DEALLOCATE ALL from
    elsewhere); the store, at its bound, gives them up while it prepares others, inside
    a transaction and out. The protocol's Close of a lost name is no error; a libpq
    older than 17 deallocates by statement (forced here on this libpq), which would
    fail and abort a transaction: it waits for a PREPARE outside one."""
    db = pg_store.db
    with db.once() as c:
        c.run("INSERT INTO rate_buckets (key, tat) VALUES (?, ?)", ("k", 7))
    dbapi = db._local.dbapi
    statements = db._statements_for(dbapi)
    statements._most = 2
    statements._closes = statements._closes and close == "protocol"
    for n in range(2):
        for _ in range(6):
            with db.once() as c:
                assert c.one(f"SELECT ?::int + {n}", (1,)) == (1 + n,)
    dbapi.execute("DEALLOCATE ALL")
    with db.raw() as c:
        for n in range(2, 4):
            for _ in range(6):
                assert c.one(f"SELECT ?::int + {n}", (1,)) == (1 + n,)
        assert c.run("UPDATE rate_buckets SET tat = 8 WHERE key = ?", ("k",)) == 1
    assert pg_store.buckets.tat("k") == 8  # committed
    for n in range(4, 6):
        for _ in range(6):
            with db.once() as c:
                assert c.one(f"SELECT ?::int + {n}", (1,)) == (1 + n,)
    assert _server_side(pg_store)[0] <= 2
    assert not statements._closing


def test_names_waiting_to_be_deallocated_stay_bounded_inside_a_transaction(
    pg_store: Store,
) -> None:
    """Without the protocol's Close (a libpq older than 17, forced here), names given up
    inside a transaction wait for a PREPARE outside one: many shapes prepared inside one
    transaction keep the server's prepared statements bounded (twice the bound) and
    every statement right; the next PREPARE outside deallocates them."""
    db = pg_store.db
    with db.once() as c:
        c.one("SELECT 1")
    statements = db._statements_for(db._local.dbapi)
    statements._most = 3
    statements._closes = False
    with db.raw() as c:
        for n in range(20):
            for _ in range(6):
                assert c.one(f"SELECT ?::int + {n}", (1,)) == (1 + n,)
            (count,) = c.one("SELECT count(*)::int FROM pg_prepared_statements")
            assert count <= 2 * 3
    for _ in range(6):
        with db.once() as c:
            assert c.one("SELECT ?::int - 1", (1,)) == (0,)
    assert _server_side(pg_store)[0] <= 3
    assert not statements._closing

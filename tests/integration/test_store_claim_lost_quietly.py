"""A replacement's claim lost (RFC 9773 §5) is no error on PostgreSQL.

Two orders naming one certificate race for its claim; the loser is refused with
alreadyReplaced, which is expected, not a fault. Its claim takes no row and its writes,
made only while the claim is its own, write none: no statement fails, so the server
logs no ERROR for it and rolls no transaction back. Counted at the driver (no result is
an error) and at the server (the database's rolled back transactions)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import pq

from acmekit.server.store import Store
from acmekit_testkit.pendingorders import (
    authorization_record,
    order_record,
    pending_authorization,
    reserved_certificate,
    stored_account,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LOSERS = 8  # past the driver's threshold: the statements then prepared, and lost alike


def _alone(store: Store) -> bool:
    """Whether this thread's connection is the database's only one: no other backend
    is left to report its counts later."""
    with store.db.once() as c:
        others = c.one(
            "SELECT COUNT(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )[0]
    return int(others) == 0


def _wait_alone(store: Store) -> None:
    for _ in range(1200):  # generously bounded, 30 s, so a hang fails
        if _alone(store):
            return
        time.sleep(0.025)
    raise AssertionError("other connections to the database stayed")


def _rollbacks(store: Store) -> int:
    """The database's transactions rolled back, this connection's counts reported first
    (as it goes idle after the flush is asked for)."""
    with store.db.once() as c:
        c.one("SELECT pg_stat_force_next_flush()")
    with store.db.once() as c:
        row = c.one("SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()")
    return int(row[0])


class _ErrorResults:
    """psycopg's wait on the store's connection, keeping every error result it returns."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.errors: list[str] = []

    def __call__(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        got = self.real(gen, *args, **kwargs)
        for res in got if isinstance(got, list) else ():
            if res.status == pq.ExecStatus.FATAL_ERROR:
                self.errors.append((res.error_message or b"").decode())
        return got


@pytest.mark.postgres
def test_a_lost_claim_fails_no_statement(pg_store: Store) -> None:
    store = pg_store
    stored_account(store, NOW)
    reserved_certificate(store, "cert", NOW)
    reused = pending_authorization(store, "acct", "reused.example.test", NOW + timedelta(days=7))
    assert store.orders.add_order(
        order_record("first", (reused,), NOW, "cert"), [], None, ("cert", None)
    )
    _wait_alone(store)
    before = _rollbacks(store)
    db = store.db
    kept = db._statements_for(db._local.dbapi)
    watch = _ErrorResults(kept._wait)
    kept._wait = watch
    try:
        for n in range(LOSERS):
            lost = order_record(f"lost{n}", (reused, f"fresh{n}"), NOW, "cert")
            # Its new authorization and challenge, the order, the marks: none written.
            added = store.orders.add_order(
                lost,
                [authorization_record(f"fresh{n}", f"fresh{n}.example.test", NOW)],
                None,
                ("cert", None),
            )
            assert not added
    finally:
        kept._wait = watch.real
    assert watch.errors == []
    assert _rollbacks(store) == before
    with store.db.once() as c:
        written = c.one(
            "SELECT (SELECT COUNT(*) FROM orders WHERE id LIKE 'lost%'), "
            "(SELECT COUNT(*) FROM authorizations WHERE id LIKE 'fresh%'), "
            "(SELECT COUNT(*) FROM challenges WHERE authz_id LIKE 'fresh%'), "
            "(SELECT COUNT(*) FROM authorizations WHERE renewal_order_id LIKE 'lost%')"
        )
    assert tuple(written) == (0, 0, 0, 0)
    assert store.certificates.replacement("cert") == "first"

"""An order's writes when it reuses authorizations (a renewal), counted at the driver.

An order whose names all reuse live authorizations writes one row, the order's: alone it
is atomic, so it goes in autocommit, with no BEGIN and COMMIT (on PostgreSQL two round
trips; on SQLite two statements sqlite3 prepares from their text). An order that
replaces a certificate (RFC 9773 §5) also marks its authorizations as in renewal, after
the inserts it may read: on PostgreSQL all sent before one Sync, one implicit
transaction in one round trip, where BEGIN, each statement and COMMIT took one each. On
both databases a failure leaves none of the order's writes, and an interrupted batch on
PostgreSQL leaves all or none of them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_store
from acmekit_testkit.pendingorders import (
    authorization_record,
    order_record,
    pending_authorization,
    reserved_certificate,
    stored_account,
)
from acmekit_testkit.sqlcount import SqlCount, counting
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(params=BACKEND_PARAMS)
def counted_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Store, SqlCount]]:
    """A store with the account `acct`, its statements counted from its first connection."""
    with counting() as count, fresh_store(request.param, tmp_path, "renewal.db") as store:
        stored_account(store, NOW)
        yield store, count


def _renewal_of(store: Store, authz_id: str) -> str | None:
    with store.db.once() as c:
        row = c.one("SELECT renewal_order_id FROM authorizations WHERE id = ?", (authz_id,))
    return None if row is None else row[0]


def test_an_order_that_adds_no_authorization_is_one_write_in_autocommit(
    counted_store: tuple[Store, SqlCount],
) -> None:
    store, count = counted_store
    reused = pending_authorization(store, "acct", "reused.example.test", NOW + timedelta(days=7))
    store.orders.add_order(order_record("warm", (reused,), NOW), [])  # the connection's first uses
    mark, trips = count.mark(), len(count.trips)
    store.orders.add_order(order_record("renewal", (reused,), NOW), [])
    assert count.since(mark) == (1, 0)  # the insert, no transaction of its own
    if store.remote:  # the insert alone: was BEGIN, the insert, COMMIT
        assert [t[0].split()[0] for t in count.trips[trips:]] == ["INSERT"]
    found = store.orders.order("renewal")
    assert found is not None and found.authz_ids == (reused,)


def test_a_replacing_order_marks_its_authorizations_with_its_writes(
    counted_store: tuple[Store, SqlCount],
) -> None:
    store, count = counted_store
    reused = pending_authorization(store, "acct", "reused.example.test", NOW + timedelta(days=7))
    fresh = authorization_record("fresh", "fresh.example.test", NOW)
    trips = len(count.trips)
    mark = count.mark()
    store.orders.add_order(order_record("renewal", (reused, "fresh"), NOW, "cert"), [fresh])
    # The fresh authorization and its challenge, the order, the marks: one transaction.
    assert count.since(mark) == (4, 1)
    if store.remote:  # one round trip: was BEGIN, each of the four, COMMIT
        (sent,) = count.trips[trips:]
        assert [t.split()[0] for t in sent] == ["INSERT", "INSERT", "INSERT", "UPDATE"]
    assert _renewal_of(store, reused) == "renewal" and _renewal_of(store, "fresh") == "renewal"
    # An authorization already serving an earlier renewal keeps it.
    store.orders.add_order(order_record("again", (reused,), NOW, "cert"), [])
    assert _renewal_of(store, reused) == "renewal"
    assert store.orders.order("again") is not None


def test_a_replacing_order_that_fails_leaves_none_of_its_writes(
    counted_store: tuple[Store, SqlCount],
) -> None:
    store, _ = counted_store
    reused = pending_authorization(store, "acct", "reused.example.test", NOW + timedelta(days=7))
    store.orders.add_order(order_record("taken", (reused,), NOW), [])
    fresh = authorization_record("fresh", "fresh.example.test", NOW)
    with pytest.raises(store.db.integrity):  # the order's id is taken: its insert fails
        store.orders.add_order(order_record("taken", (reused, "fresh"), NOW, "cert"), [fresh])
    assert store.orders.authorization("fresh") is None
    assert _renewal_of(store, reused) is None


def test_a_replacing_order_whose_claim_is_taken_writes_nothing(
    counted_store: tuple[Store, SqlCount],
) -> None:
    """The claim on the certificate is the first of the order's writes: where another
    order took it, none of them is written (RFC 9773 §5: alreadyReplaced)."""
    store, _ = counted_store
    reserved_certificate(store, "cert", NOW)
    reused = pending_authorization(store, "acct", "reused.example.test", NOW + timedelta(days=7))
    assert store.orders.add_order(
        order_record("first", (reused,), NOW, "cert"), [], None, ("cert", None)
    )
    assert store.certificates.replacement("cert") == "first"
    fresh = authorization_record("fresh", "fresh.example.test", NOW)
    lost = order_record("second", (reused, "fresh"), NOW, "cert")
    assert not store.orders.add_order(lost, [fresh], ["fresh"], ("cert", None))
    assert store.orders.order("second") is None
    assert store.orders.authorization("fresh") is None
    assert store.certificates.replacement("cert") == "first"
    for n in range(8):  # past the driver's threshold: the claim then prepared, and lost alike
        assert not store.orders.add_order(
            order_record(f"lost{n}", (reused,), NOW, "cert"), [], [], ("cert", None)
        )
        assert store.orders.order(f"lost{n}") is None
    # Taken over from the order that held it (a failed one) by compare-and-set.
    taken = order_record("third", (reused, "fresh"), NOW, "cert")
    assert store.orders.add_order(taken, [fresh], ["fresh"], ("cert", "first"))
    assert store.certificates.replacement("cert") == "third"
    assert _renewal_of(store, "fresh") == "third" and _renewal_of(store, reused) == "first"


class _InterruptAt:
    """psycopg's wait, raising KeyboardInterrupt (a Ctrl-C) at its `at`th call."""

    def __init__(self, real: Any, at: int) -> None:
        self._real = real
        self._at = at
        self.calls = 0

    def __call__(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self._at:
            raise KeyboardInterrupt
        return self._real(gen, *args, **kwargs)


@pytest.mark.postgres
@pytest.mark.parametrize("at", [1, 2, 3, 4])
def test_a_replacing_order_interrupted_is_written_whole_or_not_at_all(
    pg_store: Store, at: int
) -> None:
    """A Ctrl-C while the batch waits for the server (at its flush, or while its
    answers are read): the connection is given up, and the server, which may have had
    the Sync, commits it all or rolls it all back; the claim on the certificate, the
    order, its new authorization and the marks are all there or none is."""
    store = pg_store
    stored_account(store, NOW)
    reused = pending_authorization(store, "acct", "reused.example.test", NOW + timedelta(days=7))
    reserved_certificate(store, "cert", NOW)
    db = store.db
    kept = db._statements_for(db._local.dbapi)
    hook = _InterruptAt(kept._wait, at)
    kept._wait = hook
    try:
        with pytest.raises(KeyboardInterrupt):
            store.orders.add_order(
                order_record("renewal", (reused, "fresh"), NOW, "cert"),
                [authorization_record("fresh", "fresh.example.test", NOW)],
                None,
                ("cert", None),
            )
    finally:
        kept._wait = hook._real
    # Read on one snapshot: the server may still be committing what the closed
    # connection sent, and a commit is seen whole or not at all.
    with store.db.once() as c:
        seen = c.one(
            "SELECT (SELECT COUNT(*) FROM orders WHERE id = 'renewal'), "
            "(SELECT COUNT(*) FROM authorizations WHERE id = 'fresh'), "
            "(SELECT COUNT(*) FROM authorizations WHERE renewal_order_id = 'renewal'), "
            "(SELECT COUNT(*) FROM certificates WHERE replaced_by = 'renewal')"
        )
    assert tuple(seen) in ((0, 0, 0, 0), (1, 1, 2, 1))


@pytest.mark.postgres
def test_a_claim_held_by_a_transaction_not_committed_waits_and_is_lost(
    pg_store: Store,
) -> None:
    """Another process's order holds the claim in its transaction, not committed yet: the
    claim waits on the certificate's row, is judged again once that commits, takes no
    row, and its order writes nothing."""
    store = pg_store
    stored_account(store, NOW)
    reserved_certificate(store, "cert", NOW)
    reused = pending_authorization(store, "acct", "reused.example.test", NOW + timedelta(days=7))
    other = store.engine.raw_connection()
    try:
        cur = other.cursor()
        cur.execute("UPDATE certificates SET replaced_by = 'other' WHERE id = 'cert'")
        cur.execute("SELECT pg_backend_pid()")
        holder = cur.fetchone()[0]
        written: list[bool] = []
        order = order_record("late", (reused,), NOW, "cert")
        thread = threading.Thread(
            target=lambda: written.append(store.orders.add_order(order, [], None, ("cert", None)))
        )
        thread.start()
        with store.db.once() as c:  # until the claim waits for the holder's lock
            while not c.one(
                "SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND pid <> ?", (holder,)
            )[0]:
                assert thread.is_alive()
        other.commit()
        thread.join(30)
    finally:
        other.close()
    assert written == [False]
    assert store.orders.order("late") is None and _renewal_of(store, reused) is None
    assert store.certificates.replacement("cert") == "other"

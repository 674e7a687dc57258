"""Processes racing for one certificate's replacement claim (RFC 9773 §5), each on its
own connection, on SQLite and PostgreSQL: for each certificate exactly one order wins,
written whole (the order, its new authorization and challenge, the marks on the
authorization it reuses), and each loser writes nothing at all.

Also a claim's batch interrupted on PostgreSQL: its connection ended by the server while
the claim waits for another transaction's lock, after every statement of the batch was
sent; nothing of it is written and the store goes on to claim on a new connection."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.pendingorders import (
    authorization_record,
    order_record,
    pending_authorization,
    reserved_certificate,
    stored_account,
)
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PROCESSES = 4
ROUNDS = 12


def _prepared(store: Store) -> None:
    """The account, a certificate per round, and per round an authorization to reuse."""
    stored_account(store, NOW)
    for r in range(ROUNDS):
        reserved_certificate(store, f"cert{r}", NOW, f"{1000 + r}", f"r{r}.example.test")
        pending_authorization(store, "acct", f"r{r}.example.test", NOW + timedelta(days=7))
        if r % 2:  # held by an order that failed: the claim is taken over from it
            with store.db.once() as c:
                c.run(
                    "UPDATE certificates SET replaced_by = ? WHERE id = ?", (_dead(r), f"cert{r}")
                )


def _dead(r: int) -> str | None:
    """The failed order that held round `r`'s claim (None: unclaimed)."""
    return f"dead{r}" if r % 2 else None


def _racer(url: str, index: int, barrier: Any, results: Any) -> None:
    store = Store.from_url(url)
    try:
        for r in range(ROUNDS):
            fresh = authorization_record(f"f{r}p{index}", f"f{r}p{index}.example.test", NOW)
            order = order_record(
                f"o{r}p{index}", (f"z-r{r}.example.test", fresh.id), NOW, f"cert{r}"
            )
            barrier.wait(60)
            won = store.orders.add_order(order, [fresh], None, (f"cert{r}", _dead(r)))
            results.put((r, index, won))
    finally:
        store.engine.dispose()


def _lock_waiter(store: Store) -> int:
    """The backend whose claim waits for the certificate's row lock (bounded, 30 s)."""
    waiting = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE certificates%'"
    )
    for _ in range(1200):
        with store.db.once() as c:
            row = c.one(waiting)
        if row is not None:
            return int(row[0])
        time.sleep(0.025)
    raise AssertionError("the claim never waited for the lock")


@pytest.fixture(params=BACKEND_PARAMS)
def race_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, "race.db", prefix="acmekit_race") as url:
        store = Store.from_url(url)
        try:
            _prepared(store)
        finally:
            store.engine.dispose()
        yield url


def test_one_order_wins_each_claim_whole_and_losers_write_nothing(race_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(race_url, i, barrier, results)) for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in range(PROCESSES * ROUNDS)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store.from_url(race_url)
    try:
        for r in range(ROUNDS):
            winners = [i for (rr, i, won) in got if rr == r and won]
            assert len(winners) == 1, (r, got)
            (w,) = winners
            assert store.certificates.replacement(f"cert{r}") == f"o{r}p{w}"
            assert store.orders.order(f"o{r}p{w}") is not None
            with store.db.once() as c:
                row = c.one(
                    "SELECT (SELECT COUNT(*) FROM orders WHERE id LIKE ?), "
                    "(SELECT COUNT(*) FROM authorizations WHERE id LIKE ?), "
                    "(SELECT COUNT(*) FROM challenges WHERE authz_id LIKE ?), "
                    "(SELECT renewal_order_id FROM authorizations WHERE id = ?)",
                    (f"o{r}p%", f"f{r}p%", f"f{r}p%", f"z-r{r}.example.test"),
                )
            assert tuple(row) == (1, 1, 1, f"o{r}p{w}")
            authz = store.orders.authorization(f"f{r}p{w}")
            assert authz is not None and len(authz.challenges) == 1
    finally:
        store.engine.dispose()


@pytest.mark.postgres
def test_a_claim_whose_connection_is_ended_mid_batch_writes_nothing(pg_store: Store) -> None:
    store = pg_store
    _prepared(store)
    fresh = authorization_record("killed", "killed.example.test", NOW)
    order = order_record("o-killed", ("z-r0.example.test", fresh.id), NOW, "cert0")
    outcome: list[Any] = []
    with store.engine.connect() as locker:
        # Another transaction holds the certificate's row: the claim waits on it.
        locker.exec_driver_sql("BEGIN")
        locker.exec_driver_sql("SELECT 1 FROM certificates WHERE id = 'cert0' FOR UPDATE")

        def claim() -> None:
            try:
                outcome.append(store.orders.add_order(order, [fresh], None, ("cert0", None)))
            except Exception as exc:  # the connection ended under it
                outcome.append(exc)

        thread = threading.Thread(target=claim)
        thread.start()
        pid = _lock_waiter(store)
        with store.db.once() as c:
            c.one("SELECT pg_terminate_backend(?)", (pid,))
        thread.join(60)
        locker.exec_driver_sql("ROLLBACK")
    assert len(outcome) == 1 and isinstance(outcome[0], Exception)
    assert store.certificates.replacement("cert0") is None
    assert store.orders.order("o-killed") is None
    assert store.orders.authorization("killed") is None
    # The store claims afresh on a new connection.
    again = authorization_record("again", "again.example.test", NOW)
    assert store.orders.add_order(
        order_record("o-again", ("z-r0.example.test", again.id), NOW, "cert0"),
        [again],
        None,
        ("cert0", None),
    )
    assert store.certificates.replacement("cert0") == "o-again"
    reused = store.orders.authorization("z-r0.example.test")
    assert reused is not None and reused.in_renewal

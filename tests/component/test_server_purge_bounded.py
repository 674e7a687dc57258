"""The purge's cost is bounded by its batch, however many expired rows it keeps, on
SQLite and PostgreSQL: with thousands of expired orders and authorizations kept
(orders with a certificate, orders being issued, validated authorizations) and nothing
due, a round reads about a batch's rows, also while a new purger (a restart) passes
over them the first time. Counted, not timed: on SQLite the
virtual machine's steps, on PostgreSQL the index entries and table rows read
(acmekit_testkit.dbreads).

Also what the walks must not skip: an order being issued when the walk passed it,
which fails later, goes once past the retention; and an order whose issuance failed
after its precertificate was signed stays past the grace, a certificate request record
(BR §5.4.1), as long as a validated authorization."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acmekit.database import to_us
from acmekit.server.config import PurgeSettings
from acmekit.server.purge import LONGEST_VALIDITY, Purger
from acmekit.server.repos.purge import Due
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.dbreads import Reads
from acmekit_testkit.purgerows import insert_rows, order_row
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
GRACE = timedelta(days=10)
RETENTION = timedelta(days=100)
BATCH = 25
KEPT = 1000  # of each kind
# Due, of each kind: enough that PostgreSQL plans as for a CA's tables (a batch's
# challenges by their index, not reading the small table whole; a subquery's batch of
# ids by a hash join over every row due).
DUE = 50_000
# A dry run's limit past any test's rows here: its counts exact.
LIMIT = 1_000_000
SETTINGS = PurgeSettings(grace=GRACE, retention=RETENTION, batch=BATCH)
# Past the grace, within the retention: kept.
EXPIRED = to_us(NOW - timedelta(days=20))
# Past the retention and the longest validity: due, whatever the row.
LONG_AGO = to_us(NOW - LONGEST_VALIDITY - RETENTION - timedelta(days=1))
# A round's reads, a batch's worth: on SQLite the VM steps of reading and judging a
# batch (the walks' ranges, a challenge count per authorization) stay under this; a
# walk from the oldest row over KEPT kept rows takes well over ten times as many.
SQLITE_STEPS = 200 * BATCH
# On PostgreSQL, index entries and rows: the walks' ranges, the challenges counted.
PG_ROWS = 10 * BATCH


@pytest.fixture(params=BACKEND_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_database(request.param, tmp_path, "ca.db", prefix="acmekit_purgeb") as url:
        found = Store.from_url(url)
        yield found
        found.engine.dispose()


def _bound(store: Store) -> int:
    """A round's reads, a batch's worth, as `Reads` counts them on `store`'s database."""
    return PG_ROWS if store.remote else SQLITE_STEPS


def _validated(n: int, expires: int) -> tuple[dict[str, Any], dict[str, Any]]:
    authz = {
        "id": f"za{n:06d}",
        "account_id": "acct",
        "identifier_type": "dns",
        "identifier_value": f"n{n}.bounded.test",
        "wildcard": False,
        "stored_status": "pending",
        "expires": expires,
        "decided_by": f"zc{n:06d}",
    }
    challenge = {
        "id": f"zc{n:06d}",
        "authz_id": f"za{n:06d}",
        "type": "http-01",
        "token": f"t{n}",
        "status": "valid",
    }
    return authz, challenge


def _kept(store: Store) -> None:
    """KEPT each: issued orders, orders being issued, validated authorizations, all
    expired past the grace and within the retention."""
    at = EXPIRED
    insert_rows(
        store,
        "orders",
        [order_row(f"oi{n:06d}", at + n, certificate_id=f"c{n}") for n in range(KEPT)]
        + [order_row(f"of{n:06d}", at + n, finalize_started=at - 5) for n in range(KEPT)],
    )
    pairs = [_validated(n, at + n) for n in range(KEPT)]
    insert_rows(store, "authorizations", [a for a, _ in pairs])
    insert_rows(store, "challenges", [c for _, c in pairs])
    if store.remote:
        # The statistics a CA's tables have (autovacuum's): without them PostgreSQL
        # plans a table of unknown size as a small one, a sequential scan.
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE orders, authorizations, challenges"))


def _count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


@pytest.mark.parametrize("restarts", [False, True], ids=["running", "restarted"])
def test_a_round_reads_a_batch_however_many_expired_rows_are_kept(
    store: Store, restarts: bool
) -> None:
    _kept(store)
    reads = Reads(store)
    try:
        purger = Purger(store, SETTINGS, lambda: NOW)
        # The first pass over the kept rows, a batch a round: each round bounded.
        rounds = 0
        while True:
            read, done = reads.of(lambda: purger.batches(1))
            assert done == Due()
            assert read <= _bound(store), (rounds, read)
            rounds += 1
            if rounds > 2 * KEPT // BATCH + 2:
                break
        if restarts:
            purger = Purger(store, SETTINGS, lambda: NOW)
            read, _ = reads.of(lambda: purger.batches(1))
            assert read <= _bound(store)
        else:
            for _ in range(3):
                read, _ = reads.of(lambda: purger.batches(1))
                assert read <= _bound(store)
    finally:
        reads.close()
    assert _count(store, "orders") == 2 * KEPT
    assert _count(store, "authorizations") == KEPT


def test_a_round_reads_a_batch_however_many_rows_are_due(store: Store) -> None:
    """DUE orders and validated authorizations past the retention: a round deletes a
    batch of each and reads about that batch (deleting, and walking both a kept batch and a
    deleted one: twice the bound), not every row due (a DELETE of a subquery's batch of ids
    was planned on PostgreSQL as a hash join over every row past the cutoff)."""
    pairs = [_validated(n, LONG_AGO + n) for n in range(DUE)]
    insert_rows(store, "authorizations", [a for a, _ in pairs])
    insert_rows(store, "challenges", [c for _, c in pairs])
    failed = {"finalize_started": LONG_AGO - 5, "error": "{}"}
    insert_rows(
        store, "orders", [order_row(f"od{n:06d}", LONG_AGO + n, **failed) for n in range(DUE)]
    )
    if store.remote:
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE orders, authorizations, challenges"))
    reads = Reads(store)
    try:
        # The default batch: PostgreSQL planned a batch of 25 ids by a nested loop.
        batch = PurgeSettings().batch
        purger = Purger(store, replace(SETTINGS, batch=batch), lambda: NOW)
        for _ in range(3):
            read, done = reads.of(lambda: purger.batches(1))
            # The walk past the retention takes a batch (the grace's keeps the next).
            assert done == Due(orders=batch, authorizations=batch, challenges=batch)
            assert read <= 2 * _bound(store) * batch // BATCH, read
    finally:
        reads.close()


def test_an_order_failed_after_the_walk_passed_it_goes_after_the_retention(
    store: Store,
) -> None:
    """Claimed (being issued) when the grace's walk passed it; it fails later: due once
    past the retention, never skipped."""
    claimed = order_row("obeing", EXPIRED, finalize_started=EXPIRED - 5)
    insert_rows(store, "orders", [claimed, order_row("onever", EXPIRED + 1)])
    now = NOW
    purger = Purger(store, SETTINGS, lambda: now)
    assert purger.batches(1) == Due(orders=1)  # the one never claimed
    assert _count(store, "orders") == 1
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET error = '{}' WHERE id = 'obeing'"))
    assert purger.batches(1) == Due()  # a failed claim is kept as long as a validation
    now = NOW + LONGEST_VALIDITY + RETENTION
    assert purger.due(LIMIT).counted == Due(orders=1)
    assert purger.batches(1) == Due(orders=1)
    assert _count(store, "orders") == 0


def test_an_order_with_a_signed_precertificate_is_kept_past_the_grace(store: Store) -> None:
    """Its issuance failed after the precertificate was signed (CT logging failed): the
    precertificate counts as issued and names the order, whose CSR is the request."""
    failed = order_row("oprecert", EXPIRED, finalize_started=EXPIRED - 5, error='{"t": 1}')
    insert_rows(store, "orders", [failed])
    insert_rows(
        store,
        "certificates",
        [
            {
                "id": "cprecert",
                "serial": "0a",
                "order_id": "oprecert",
                "identifiers": "[]",
                "not_before": EXPIRED - 5,
                "not_after": EXPIRED + 10**12,
                "issued": EXPIRED - 5,
                "abandoned": False,
                "precert": b"\x30\x00",
            }
        ],
    )
    now = NOW
    purger = Purger(store, SETTINGS, lambda: now)
    assert purger.due(LIMIT).counted == Due()
    assert purger.everything() == Due()
    assert _count(store, "orders") == 1
    # As long as a validated authorization of the same expiry: the retention after the
    # longest validity a certificate of it could have had.
    expired = NOW - timedelta(days=20)  # EXPIRED
    now = expired + LONGEST_VALIDITY + RETENTION - timedelta(days=1)
    assert Purger(store, SETTINGS, lambda: now).everything() == Due()
    now = expired + LONGEST_VALIDITY + RETENTION + timedelta(days=1)
    assert Purger(store, SETTINGS, lambda: now).everything() == Due(orders=1)


def test_old_rows_go_from_the_oldest_whatever_the_cursor(store: Store) -> None:
    """Past the retention every row without a certificate goes but one being issued,
    and every authorization, however far the grace's walk has gone."""
    pairs = [_validated(n, LONG_AGO + n) for n in range(3)]
    insert_rows(store, "authorizations", [a for a, _ in pairs])
    insert_rows(store, "challenges", [c for _, c in pairs])
    insert_rows(
        store,
        "orders",
        [
            order_row("oold", LONG_AGO),
            order_row("ofailed", LONG_AGO, finalize_started=LONG_AGO - 5, error="{}"),
            order_row("obeing", LONG_AGO, finalize_started=LONG_AGO - 5),
            order_row("oissued", LONG_AGO, certificate_id="c1"),
        ],
    )
    purger = Purger(store, SETTINGS, lambda: NOW)
    assert purger.due(LIMIT).counted == Due(orders=2, authorizations=3, challenges=3)
    assert purger.everything() == Due(orders=2, authorizations=3, challenges=3)
    with store.engine.connect() as conn:
        left = conn.execute(sa.text("SELECT id FROM orders ORDER BY id")).scalars().all()
    assert left == ["obeing", "oissued"]


def test_buckets_are_judged_by_the_database_clock_as_the_limiter_judges_them(
    store: Store,
) -> None:
    """The rate limiter judges buckets by the database's clock (the real clock's CA): a
    purger whose own clock runs an hour ahead keeps a bucket whose TAT is half an hour
    ahead of the database's (not full: deleting it would hand back tokens), and deletes
    one full for twenty minutes."""
    real = datetime.now(UTC)
    insert_rows(
        store,
        "rate_buckets",
        [
            {"key": "ahead", "tat": to_us(real + timedelta(minutes=30))},
            {"key": "full", "tat": to_us(real - timedelta(minutes=20))},
        ],
    )
    ahead = real + timedelta(hours=1)
    purger = Purger(store, SETTINGS, lambda: ahead, database_clock=True)
    assert purger.due(LIMIT).counted == Due(buckets=1)
    assert purger.batches(1) == Due(buckets=1)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT key FROM rate_buckets")).scalars().all() == ["ahead"]

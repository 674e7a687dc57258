"""Orders past the retention that are still being issued (claimed for finalize, no
error, no certificate) are kept by the purge for ever; the walk past the retention must
go on past them. It went from the oldest order each time and stopped at a batch that
deleted fewer than its size: a batch's worth of such orders at its front stopped it
there for good, and the failed orders behind them (due: `db purge --dry-run` counted
them) were never deleted, by the housekeeping loop or by `db purge`. SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acmekit.database import to_us
from acmekit.server.config import PurgeSettings
from acmekit.server.purge import LONGEST_VALIDITY, Purger
from acmekit.server.repos.purge import Due, DueCount
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.purgerows import insert_rows, order_row
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
RETENTION = timedelta(days=100)
BATCH = 5
SETTINGS = PurgeSettings(grace=timedelta(days=10), retention=RETENTION, batch=BATCH)
LONG_AGO = to_us(NOW - LONGEST_VALIDITY - RETENTION - timedelta(days=1))
ISSUING = 2 * BATCH  # the walk's first two batches: none of them due
FAILED = 3


@pytest.fixture(params=BACKEND_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_database(request.param, tmp_path, "ca.db", prefix="acmekit_purgefront") as url:
        found = Store.from_url(url)
        _orders(found)
        yield found
        found.engine.dispose()


def _orders(store: Store) -> None:
    """Orders being issued first in the walk's order (by expiry), failed ones after."""
    rows = [_claimed(f"oi{n:03d}", LONG_AGO + n, None) for n in range(ISSUING)]
    rows += [_claimed(f"of{n:03d}", LONG_AGO + 100 + n, "{}") for n in range(FAILED)]
    insert_rows(store, "orders", rows)


def _claimed(oid: str, expires: int, error: str | None) -> dict[str, Any]:
    """An order whose finalization started: being issued, or failed with `error`."""
    return order_row(oid, expires, finalize_started=expires - 1, error=error)


def _left(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(sa.text("SELECT id FROM orders"))}


def test_db_purge_deletes_the_failed_orders_behind_those_being_issued(store: Store) -> None:
    purger = Purger(store, SETTINGS, lambda: NOW)
    assert purger.due(1_000) == DueCount(Due(orders=FAILED))
    assert purger.everything() == Due(orders=FAILED)
    assert _left(store) == {f"oi{n:03d}" for n in range(ISSUING)}
    assert purger.due(1_000) == DueCount(Due())


def test_the_housekeeping_rounds_reach_them_too(store: Store) -> None:
    purger = Purger(store, SETTINGS, lambda: NOW)
    deleted = Due()
    for _ in range(ISSUING // BATCH + 1):  # a batch of each walk a round
        deleted += purger.batches(1)
    assert deleted == Due(orders=FAILED)
    assert _left(store) == {f"oi{n:03d}" for n in range(ISSUING)}


def _fail(store: Store, oid: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET error = '{}' WHERE id = :id"), {"id": oid})


def test_an_order_that_fails_after_the_walk_passed_it_is_purged_at_its_next_pass(
    store: Store,
) -> None:
    """The walk starts over from the oldest once it has reached its end, so an order it
    kept (being issued) and passed is purged by the same process once it has failed."""
    purger = Purger(store, SETTINGS, lambda: NOW)
    rounds = ISSUING // BATCH + 1
    for _ in range(rounds):
        purger.batches(1)
    _fail(store, "oi000")
    deleted = Due()
    for _ in range(rounds + 1):
        deleted += purger.batches(1)
    assert deleted == Due(orders=1)
    assert "oi000" not in _left(store)


def test_db_purge_walks_past_the_retention_once_and_ends(store: Store) -> None:
    """`everything` ends though the walk past the retention starts over in the
    housekeeping rounds (buckets being walked meanwhile, rounds apart)."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO rate_buckets (key, tat) VALUES (:key, :tat)"),
            [{"key": f"b{n:03d}", "tat": to_us(NOW + timedelta(hours=1))} for n in range(7)],
        )
    purger = Purger(store, SETTINGS, lambda: NOW)
    assert purger.everything() == Due(orders=FAILED)
    assert purger.everything() == Due()

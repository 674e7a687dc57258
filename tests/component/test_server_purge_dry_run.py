"""`acmekit server db purge --dry-run` counts along the purge's own walks, a batch at a
time, and stops after a limit of rows examined, on SQLite and PostgreSQL: its reads stay
bounded however many rows are due (a COUNT(*) over every due row read them all in one
statement, millions on a CA that had not purged for long), its counts are exact below
the limit, and past it each count cut short is printed as "at least N". Reads are
counted, not timed (acmekit_testkit.dbreads)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from acmekit.cli.main import cli
from acmekit.database import to_us
from acmekit.server.config import PurgeSettings
from acmekit.server.purge import LONGEST_VALIDITY, Purger
from acmekit.server.repos.purge import Due, DueCount, Walk
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.dbreads import Reads
from acmekit_testkit.purgerows import insert_rows, order_row
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
GRACE = timedelta(days=10)
RETENTION = timedelta(days=100)
BATCH = 25
SETTINGS = PurgeSettings(grace=GRACE, retention=RETENTION, batch=BATCH)
# Past the grace, within the retention: due if never claimed (orders) or never
# validated (authorizations), kept otherwise.
EXPIRED = to_us(NOW - timedelta(days=20))
# Past the retention and the longest validity: due, whatever the row.
LONG_AGO = to_us(NOW - LONGEST_VALIDITY - RETENTION - timedelta(days=1))
BUCKET_TAT = to_us(NOW - timedelta(hours=1))
# Rows due of each kind, far more than the dry run's limit below.
MANY = 10_000
LIMIT = 4 * BATCH
# A dry run's reads at LIMIT rows of each walk: four batches' worth of each, as much as
# four rounds of the purge read (test_server_purge_bounded's bounds: 200 steps a row on
# SQLite; 10 index entries or rows a row on PostgreSQL). Reading the rows due whole takes
# many times as many.
SQLITE_STEPS = 200 * LIMIT
PG_ROWS = 10 * LIMIT


@pytest.fixture(params=BACKEND_PARAMS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, "ca.db", prefix="acmekit_purgedry") as found:
        yield found


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    found = Store.from_url(url)
    yield found
    found.engine.dispose()


def _authz(aid: str, expires: int, valid: bool, challenges: int) -> list[dict[str, Any]]:
    """An authorization row and its challenges' (one valid and decisive if `valid`)."""
    found: list[dict[str, Any]] = [
        {
            "id": aid,
            "account_id": "acct",
            "identifier_type": "dns",
            "identifier_value": f"{aid}.dry.test",
            "wildcard": False,
            "stored_status": "pending",
            "expires": expires,
            "decided_by": f"{aid}c0" if valid else None,
        }
    ]
    for n in range(challenges):
        status = "valid" if valid and n == 0 else "pending"
        found.append(
            {"id": f"{aid}c{n}", "authz_id": aid, "type": "http-01", "token": f"t{aid}{n}"}
            | {"status": status}
        )
    return found


def _authzs(store: Store, rows: list[list[dict[str, Any]]]) -> None:
    insert_rows(store, "authorizations", [r[0] for r in rows])
    insert_rows(store, "challenges", [c for r in rows for c in r[1:]])


def _buckets(store: Store, count: int, prefix: str, tat: int) -> None:
    insert_rows(
        store, "rate_buckets", [{"key": f"{prefix}{n:06d}", "tat": tat} for n in range(count)]
    )


def _analyze(store: Store) -> None:
    if store.remote:
        # The statistics a CA's tables have (autovacuum's): without them PostgreSQL
        # plans a table of unknown size as a small one.
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE orders, authorizations, challenges, rate_buckets"))


def _mixed(store: Store, at: int) -> Due:
    """A few of each kind, due and kept, expired at `at` (past the grace, within the
    retention) or long ago; what is due among them. By expiry, the walks' order: the
    orders and authorizations past the retention first, then those due under the grace,
    then those kept."""
    insert_rows(
        store,
        "orders",
        # failed, past the retention: due
        [
            order_row(f"oo{n:03d}", LONG_AGO + n, finalize_started=LONG_AGO, error="{}")
            for n in range(3)
        ]
        + [order_row(f"od{n:03d}", at + n) for n in range(30)]  # never claimed: due
        # being issued, failed within the retention, issued: kept
        + [order_row(f"ok{n:03d}", at + 100 + n, finalize_started=at - 5) for n in range(10)]
        + [order_row(f"of{n:03d}", at + 200 + n, finalize_started=at, error="{}") for n in range(4)]
        + [order_row(f"oi{n:03d}", at + n, certificate_id=f"c{n}") for n in range(6)],
    )
    _authzs(
        store,
        [_authz(f"ao{n:03d}", LONG_AGO + n, True, 1) for n in range(2)]  # past retention
        + [_authz(f"ad{n:03d}", at + n, False, 2) for n in range(20)]  # never validated: due
        + [_authz(f"av{n:03d}", at + 100 + n, True, 3) for n in range(5)],  # validated: kept
    )
    _buckets(store, 7, "full", BUCKET_TAT)
    _buckets(store, 3, "wait", to_us(NOW + timedelta(hours=1)))
    return Due(orders=33, authorizations=22, challenges=2 * 1 + 20 * 2, buckets=7)


def test_a_dry_run_reads_a_bounded_number_of_rows_however_many_are_due(store: Store) -> None:
    insert_rows(store, "orders", [order_row(f"od{n:06d}", EXPIRED + n) for n in range(MANY)])
    _authzs(store, [_authz(f"ad{n:06d}", EXPIRED + n, False, 1) for n in range(MANY)])
    _buckets(store, MANY, "full", BUCKET_TAT)
    _analyze(store)
    purger = Purger(store, SETTINGS, lambda: NOW)
    reads = Reads(store)
    try:
        read, found = reads.of(lambda: purger.due(LIMIT))
    finally:
        reads.close()
    assert read <= (PG_ROWS if store.remote else SQLITE_STEPS), read
    everything = frozenset(Walk)
    assert found == DueCount(Due(LIMIT, LIMIT, LIMIT, LIMIT), everything)


@pytest.mark.parametrize("limit", [1_000, 47], ids=["far", "just-enough"])
def test_below_the_limit_the_counts_are_exact(store: Store, limit: int) -> None:
    """47 orders, 27 authorizations and 10 buckets examined (every expired row of each
    kind without a certificate, over several batches): at a limit of that many or more
    the walks reach their end, and count what the purge then deletes."""
    due = _mixed(store, EXPIRED)
    purger = Purger(store, SETTINGS, lambda: NOW)
    assert purger.due(limit) == DueCount(due)
    assert purger.everything() == due
    assert purger.due(limit) == DueCount(Due())


def test_at_the_limit_each_walk_cut_short_counts_at_least(store: Store) -> None:
    due = _mixed(store, EXPIRED)
    purger = Purger(store, SETTINGS, lambda: NOW)
    # The first 33 orders are all due, 14 kept after them; 27 authorizations, 10 buckets.
    found = purger.due(33)
    assert found == DueCount(due, frozenset({Walk.ORDERS}))
    found = purger.due(27)  # every authorization: their count exact
    assert found == DueCount(Due(27, 22, 42, 7), frozenset({Walk.ORDERS}))
    found = purger.due(26)  # one validated authorization not looked at
    assert found == DueCount(Due(26, 22, 42, 7), frozenset({Walk.ORDERS, Walk.AUTHORIZATIONS}))
    found = purger.due(8)
    # 3 + 5 orders; 2 authorizations (a challenge each) and 6 (two each); 7 of 8 buckets
    counted = Due(orders=8, authorizations=8, challenges=2 + 6 * 2, buckets=7)
    assert found == DueCount(counted, frozenset(Walk))


def _run_cli(url: str, tmp_path: Path, *args: str) -> str:
    argv = ["server", "db", "purge", "--dry-run", *args]
    argv += ["--state-dir", str(tmp_path / "state"), "--db", url]
    result = CliRunner().invoke(cli, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_the_command_prints_exact_counts_below_the_limit_and_at_least_past_it(
    store: Store, url: str, tmp_path: Path
) -> None:
    """By the real clock and the default grace (30 days) and retention (730 days)."""
    real = datetime.now(UTC)
    at = to_us(real - timedelta(days=60))
    insert_rows(store, "orders", [order_row(f"od{n:03d}", at + n) for n in range(40)])
    _authzs(store, [_authz(f"ad{n:03d}", at + n, False, 2) for n in range(12)])
    _buckets(store, 5, "full", to_us(real - timedelta(hours=1)))
    lines = _run_cli(url, tmp_path).splitlines()
    assert lines[1:] == ["due: 40 orders, 12 authorizations, 24 challenges, 5 rate-limit buckets"]
    lines = _run_cli(url, tmp_path, "--count-limit", "40").splitlines()
    assert lines[1:] == ["due: 40 orders, 12 authorizations, 24 challenges, 5 rate-limit buckets"]
    lines = _run_cli(url, tmp_path, "--count-limit", "10").splitlines()
    assert lines[1:] == [
        "due: at least 10 orders, at least 10 authorizations, at least 20 challenges, "
        "5 rate-limit buckets",
        "(counted over the first 10 expired rows of each kind: the purge deletes all that "
        "are due; --count-limit counts further)",
    ]


def test_the_count_limit_is_a_positive_number(url: str, tmp_path: Path) -> None:
    argv = ["server", "db", "purge", "--dry-run", "--count-limit", "0", "--db", url]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert "--count-limit" in result.output


def test_the_count_limit_without_a_dry_run_is_refused(url: str, tmp_path: Path) -> None:
    """A purge deletes everything due: a limit given with it would be silently ignored."""
    argv = ["server", "db", "purge", "--count-limit", "10", "--db", url]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert "--count-limit goes with --dry-run" in result.output

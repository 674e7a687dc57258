"""The upgrade to `decided_by` and ix_authz_pending on a PostgreSQL database that a CA
goes on serving (docs/server.md, Upgrades): while the fill runs, another session reads
and writes authorizations, the fill's earlier batches are committed, and the upgrade
holds no lock on the table that would stop them; a second process starting meanwhile
waits for the upgrade and finds it done; a run interrupted in the fill or in the index's
build finishes when run again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit import migrate
from acmekit.database import create_engine, to_us
from acmekit.migrate import SERVER
from acmekit.server.repos.base import Database
from acmekit.server.repos.orders import OrderRepository
from acmekit_testkit.databases import fresh_database

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNT = "acct-online"
ROWS = 40
BATCH = 4  # ten batches, in the order of the ids
# A decided row the fill reaches in its sixth batch: the test holds its row lock there.
HELD = "fill-21"
# An unbounded wait on a lock would hang the test: a statement that would wait fails.
NO_LONG_WAIT = "SET lock_timeout = '5s'"


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "ca.db") as found:
        yield found


def _decided(n: int) -> bool:
    """The odd rows have a valid challenge, the even ones none decided."""
    return n % 2 == 1


def _fill(engine: sa.Engine) -> None:
    """Authorizations as the release before 0010 stored them."""
    with engine.begin() as conn:
        for n in range(ROWS):
            conn.execute(
                sa.text(
                    "INSERT INTO authorizations (id, account_id, identifier_type, "
                    "identifier_value, wildcard, stored_status, expires) VALUES "
                    "(:i, :a, 'dns', :v, :w, 'pending', :e)"
                ),
                {"i": f"fill-{n:02}", "a": ACCOUNT, "v": f"n{n}.example.test", "w": False}
                | {"e": to_us(NOW + timedelta(days=7))},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO challenges (id, authz_id, type, token, status) "
                    "VALUES (:i, :z, 'http-01', :k, :s)"
                ),
                {"i": f"fill-{n:02}-0", "z": f"fill-{n:02}", "k": f"tok-{n}"}
                | {"s": "valid" if _decided(n) else "pending"},
            )


def _waiting(engine: sa.Engine, locktype: str, relation: str | None = None) -> int | None:
    """The backend of this database waiting for a lock of that type (on that table)."""
    query = (
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid "
        "WHERE NOT l.granted AND l.locktype = :t AND s.datname = current_database()"
    )
    if relation is not None:
        query += f" AND l.relation = '{relation}'::regclass"
    with engine.connect() as conn:
        found = conn.execute(sa.text(query), {"t": locktype}).scalar()
    return None if found is None else int(found)


def _until_waiting(
    engine: sa.Engine, thread: threading.Thread, locktype: str, relation: str | None = None
) -> int:
    """Polls pg_locks (no clock) until the upgrade waits for that lock."""
    while thread.is_alive():
        pid = _waiting(engine, locktype, relation)
        if pid is not None:
            return pid
        thread.join(0.02)
    raise AssertionError(f"the upgrade ended without waiting for a {locktype} lock")


def _until_asked(engine: sa.Engine, thread: threading.Thread, upgrading: int) -> None:
    """Polls pg_stat_activity until another backend than the upgrade's has asked for
    the advisory lock."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid NOT IN (:p, pg_backend_pid()) AND query LIKE '%advisory_lock(%'"
    )
    while thread.is_alive():
        with engine.connect() as conn:
            if conn.execute(sa.text(query), {"p": upgrading}).scalar():
                return
        thread.join(0.02)
    raise AssertionError("the second process ended without asking for the lock")


def _upgrader(engine: sa.Engine, failed: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            migrate.upgrade(engine, SERVER, fill_batch=BATCH)
        except BaseException as exc:
            failed.append(exc)

    return threading.Thread(target=run)


def _names(engine: sa.Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, decided_by FROM authorizations")).all()
    return {str(r[0]): r[1] for r in rows}


def _assert_done(engine: sa.Engine) -> None:
    assert migrate.current(engine, SERVER) == migrate.head(SERVER)
    assert _names(engine) == {
        f"fill-{n:02}": f"fill-{n:02}-0" if _decided(n) else None for n in range(ROWS)
    }
    with engine.connect() as conn:
        valid, definition = conn.execute(
            sa.text(
                "SELECT indisvalid, pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indexrelid = 'ix_authz_pending'::regclass"
            )
        ).one()
    assert valid
    assert "UNIQUE" not in definition and "(account_id, expires)" in definition
    orders = OrderRepository(Database(engine))
    assert orders.pending_authorizations(ACCOUNT, NOW)[0] == ROWS // 2


def test_the_fill_leaves_authorizations_to_other_sessions(url: str) -> None:
    engine, other, second = create_engine(url), create_engine(url), create_engine(url)
    failed: list[BaseException] = []
    upgrade = _upgrader(engine, failed)
    started = _upgrader(second, failed)
    try:
        migrate.upgrade(engine, SERVER, "0009")
        _fill(engine)
        with other.connect() as holder, other.connect() as row:
            # A writer of challenges in a transaction: the upgrade waits for it to make
            # the trigger, after the column's revision has committed.
            holder.execute(sa.text("UPDATE challenges SET token = token WHERE id = 'fill-00-0'"))
            upgrade.start()
            _until_waiting(other, upgrade, "relation", "challenges")
            # The table is free again: a row the fill will reach is locked here...
            row.exec_driver_sql(NO_LONG_WAIT)
            row.execute(
                sa.text("SELECT 1 FROM authorizations WHERE id = :i FOR UPDATE"), {"i": HELD}
            )
            holder.commit()
            # ... and the fill waits for it, five batches done.
            pid = _until_waiting(other, upgrade, "transactionid")
            started.start()
            with other.connect() as conn:
                conn.exec_driver_sql(NO_LONG_WAIT)
                assert conn.execute(sa.text("SELECT count(*) FROM authorizations")).scalar() == ROWS
                changed = conn.execute(
                    sa.text(
                        "UPDATE authorizations SET expires = expires "
                        "WHERE id IN ('fill-02', 'fill-30')"
                    )
                )
                assert changed.rowcount == 2
                named = dict(
                    conn.execute(
                        sa.text(
                            "SELECT id, decided_by FROM authorizations "
                            "WHERE id IN ('fill-01', 'fill-31')"
                        )
                    ).all()
                )
                assert named == {"fill-01": "fill-01-0", "fill-31": None}
                held = conn.execute(
                    sa.text(
                        "SELECT mode FROM pg_locks WHERE pid = :p AND locktype = 'relation' "
                        "AND relation = 'authorizations'::regclass"
                    ),
                    {"p": pid},
                ).scalars()
                assert set(held) <= {"AccessShareLock", "RowExclusiveLock"}
                conn.commit()
            # The second process asks for the upgrade's lock before the index's build,
            # which waits for every older snapshot to end.
            _until_asked(other, started, pid)
            row.rollback()
        upgrade.join()
        started.join()
        assert failed == []
        _assert_done(engine)
    finally:
        for thread in (upgrade, started):
            if thread.is_alive():
                thread.join()
        for e in (engine, other, second):
            e.dispose()


def test_a_run_interrupted_in_the_fill_or_the_build_finishes(url: str) -> None:
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, SERVER, "0011")
        _fill(engine)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # a batch committed before the run stopped
            conn.execute(
                sa.text("UPDATE authorizations SET decided_by = 'fill-01-0' WHERE id = 'fill-01'")
            )
            # a concurrent build that failed leaves its index in the catalog, invalid
            with pytest.raises(sa.exc.IntegrityError):
                conn.execute(
                    sa.text(
                        "CREATE UNIQUE INDEX CONCURRENTLY ix_authz_pending "
                        "ON authorizations (account_id)"
                    )
                )
            invalid = (
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_authz_pending'::regclass"
            )
            assert conn.execute(sa.text(invalid)).scalar() is False
        migrate.upgrade(engine, SERVER, fill_batch=BATCH)
        _assert_done(engine)
    finally:
        engine.dispose()

"""An older release's process starting on a PostgreSQL database while this release's
upgrade runs: the older runner waits for the same advisory key inside its transaction
(pg_advisory_xact_lock), holding a snapshot. 0012's concurrent build waits for every
older snapshot to end, and that one ends only when the upgrade's lock is released: the
upgrade must still finish."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit import migrate
from acmekit.database import create_engine
from acmekit.migrate import SERVER
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.upgrades import DECIDED_AUTHZ, ITS_VALID_CHALLENGE

pytestmark = pytest.mark.postgres


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "ca.db") as found:
        yield found


def _waiting_pid(engine: sa.Engine, locktype: str) -> int | None:
    query = (
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid "
        "WHERE NOT l.granted AND l.locktype = :t AND s.datname = current_database()"
    )
    with engine.connect() as conn:
        found = conn.execute(sa.text(query), {"t": locktype}).scalar()
    return None if found is None else int(found)


def _until_waiting(engine: sa.Engine, thread: threading.Thread, locktype: str) -> None:
    while thread.is_alive():
        if _waiting_pid(engine, locktype) is not None:
            return
        thread.join(0.02)
    raise AssertionError(f"the thread ended without waiting for a {locktype} lock")


def test_an_older_runner_waiting_for_the_lock_does_not_fail_the_upgrade(url: str) -> None:
    engine, other, older = create_engine(url), create_engine(url), create_engine(url)
    failed: list[BaseException] = []
    older_saw: list[BaseException] = []

    def run_upgrade() -> None:
        try:
            migrate.upgrade(engine, SERVER, fill_batch=1)
        except BaseException as exc:
            failed.append(exc)

    def run_older() -> None:
        # The older release's runner: one transaction, the key waited for inside it.
        try:
            with older.begin() as conn:
                conn.exec_driver_sql("SET LOCAL deadlock_timeout = '10ms'")
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SERVER.lock_key})
        except BaseException as exc:
            older_saw.append(exc)

    upgrade = threading.Thread(target=run_upgrade)
    starting = threading.Thread(target=run_older)
    try:
        migrate.upgrade(engine, SERVER, "0011")
        with engine.begin() as conn:
            conn.execute(sa.text(DECIDED_AUTHZ))
            conn.execute(sa.text(ITS_VALID_CHALLENGE))
        with other.connect() as row:
            # The fill waits on this row while the older process starts.
            row.execute(sa.text("SELECT 1 FROM authorizations WHERE id = 'authz-1' FOR UPDATE"))
            upgrade.start()
            _until_waiting(other, upgrade, "transactionid")
            starting.start()
            _until_waiting(other, starting, "advisory")
            # Its own deadlock check has run (10 ms), finding no cycle yet.
            starting.join(0.5)
            row.rollback()
        upgrade.join()
        starting.join()
        assert failed == []
        assert migrate.current(engine, SERVER) == migrate.head(SERVER)
    finally:
        for thread in (upgrade, starting):
            if thread.is_alive():
                thread.join()
        for e in (engine, other, older):
            e.dispose()

"""The upgrade's DDL on a PostgreSQL table that another transaction holds (docs/server.md,
Upgrades): revision 0010's ADD COLUMN waits for the table's lock under a short
lock_timeout and tries again after a pause, so the table's later readers are not queued
behind it; it reaches head once the holder ends, and gives up with one line naming the
table after its tries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit import migrate
from acmekit.cli.main import one_line
from acmekit.database import create_engine
from acmekit.migrate import SERVER, LockWait, TableBusy
from acmekit_testkit.databases import fresh_database

pytestmark = pytest.mark.postgres

# Short tries, and enough of them to outlast the test's steps.
RETRYING = LockWait(timeout=0.2, tries=300, pause=0.2)
GIVING_UP = LockWait(timeout=0.05, tries=3, pause=0.05)
# A reader that would queue behind the ADD COLUMN until the holder ends fails instead.
NO_LONG_WAIT = "SET lock_timeout = '5s'"
HOLD = "LOCK TABLE authorizations IN ACCESS SHARE MODE"


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "ca.db") as found:
        migrate.upgrade(engine := create_engine(found), SERVER, "0009")
        engine.dispose()
        yield found


def _until_waiting(engine: sa.Engine, thread: threading.Thread) -> None:
    """Polls pg_locks (no clock) until a backend waits for a lock on authorizations."""
    query = (
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'relation' "
        "AND relation = 'authorizations'::regclass "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    while thread.is_alive():
        with engine.connect() as conn:
            if conn.execute(sa.text(query)).scalar():
                return
        thread.join(0.01)
    raise AssertionError("the upgrade ended without waiting for authorizations")


def _columns(engine: sa.Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("authorizations")}


def test_readers_pass_while_the_column_waits_for_a_holder(url: str) -> None:
    engine, other = create_engine(url), create_engine(url)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            migrate.upgrade(engine, SERVER, lock_wait=RETRYING)
        except BaseException as exc:
            failed.append(exc)

    upgrade = threading.Thread(target=run)
    try:
        with other.connect() as holder, other.connect() as reader:
            holder.exec_driver_sql(HOLD)  # an operator's session left open
            upgrade.start()
            _until_waiting(other, upgrade)
            reader.exec_driver_sql(NO_LONG_WAIT)
            # Queued behind a waiting ALTER TABLE until the holder ended; now behind one
            # try at most.
            assert reader.execute(sa.text("SELECT count(*) FROM authorizations")).scalar() == 0
            reader.rollback()
            _until_waiting(other, upgrade)  # tried again
            assert migrate.current(other, SERVER) == "0009"
            holder.commit()
        upgrade.join()
        assert failed == []
        assert migrate.current(engine, SERVER) == migrate.head(SERVER)
        assert "decided_by" in _columns(engine)
    finally:
        if upgrade.is_alive():
            upgrade.join()
        engine.dispose()
        other.dispose()


def test_the_upgrade_gives_up_naming_the_table(url: str) -> None:
    # The session's own lock_timeout, longer than the tries: the tries set theirs.
    engine = create_engine(url + "?options=-c%20lock_timeout%3D10s")
    other = create_engine(url)
    try:
        with other.connect() as holder:
            holder.exec_driver_sql(HOLD)
            pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            with pytest.raises(TableBusy) as raised:
                migrate.upgrade(engine, SERVER, lock_wait=GIVING_UP)
            line = one_line(raised.value)
            assert line == (
                "TableBusy: table authorizations stayed locked by other transactions "
                f"through 3 tries of 0.05 s (backends holding it, see pg_stat_activity: {pid}"
                "); end them and run the upgrade again"
            )
            holder.commit()
        assert migrate.current(engine, SERVER) == "0009"
        assert "decided_by" not in _columns(engine)
        migrate.upgrade(engine, SERVER, lock_wait=GIVING_UP)
        assert migrate.current(engine, SERVER) == migrate.head(SERVER)
    finally:
        engine.dispose()
        other.dispose()

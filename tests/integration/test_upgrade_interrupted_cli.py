"""Ctrl-C during `acmekit server db upgrade` on PostgreSQL, while 0010's ADD COLUMN waits
for authorizations' lock (one of `migrate.ddl_briefly`'s tries) and in 0012's fill: the
command stops as interrupted (not with an error of the connection the interrupt
invalidated), the upgrade's lock goes with its session, and running the command again
finishes the upgrade (docs/server.md, Upgrades)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
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

# The upgrade's session waiting for a table's lock (ADD COLUMN's), or for a row another
# transaction holds (the fill's UPDATE).
_WAITING_FOR_TABLE = (
    "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'relation' "
    "AND relation = 'authorizations'::regclass "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_WAITING_FOR_ROW = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid "
    "WHERE NOT l.granted AND l.locktype = 'transactionid' AND s.datname = current_database()"
)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "ca.db") as found:
        yield found


def _command(url: str) -> list[str]:
    return [sys.executable, "-m", "acmekit", "server", "db", "upgrade", "--db", url]


def _interrupted_once_waiting(url: str, engine: sa.Engine, waiting: str) -> str:
    """`db upgrade` started, Ctrl-C sent once `waiting` counts its wait: its stderr."""
    proc = subprocess.Popen(_command(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with engine.connect() as conn:
        while proc.poll() is None and not conn.execute(sa.text(waiting)).scalar():
            conn.rollback()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.02)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    return err.decode()


def _upgrades_again_from(url: str, engine: sa.Engine, revision: str) -> None:
    assert migrate.current(engine, SERVER) == revision
    again = subprocess.run(_command(url), capture_output=True, check=True, timeout=60)
    assert f"went from {revision} to {migrate.head(SERVER)}".encode() in again.stdout


def test_ctrl_c_while_the_column_waits_stops_the_command_as_interrupted(url: str) -> None:
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, SERVER, "0009")
        with engine.connect() as holder:
            holder.exec_driver_sql("LOCK TABLE authorizations IN ACCESS SHARE MODE")
            err = _interrupted_once_waiting(url, engine, _WAITING_FOR_TABLE)
            holder.rollback()
        assert "acmekit: aborted" in err
        assert "Error" not in err
        _upgrades_again_from(url, engine, "0009")
    finally:
        engine.dispose()


def test_ctrl_c_in_the_fill_stops_the_command_as_interrupted(url: str) -> None:
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, SERVER, "0011")
        with engine.begin() as conn:
            conn.execute(sa.text(DECIDED_AUTHZ))
            conn.execute(sa.text(ITS_VALID_CHALLENGE))
        with engine.connect() as row:
            # The fill waits on this row when the operator presses Ctrl-C.
            row.execute(sa.text("SELECT 1 FROM authorizations WHERE id = 'authz-1' FOR UPDATE"))
            err = _interrupted_once_waiting(url, engine, _WAITING_FOR_ROW)
            row.rollback()
        assert "acmekit: aborted" in err
        assert "Error" not in err
        _upgrades_again_from(url, engine, "0011")
    finally:
        engine.dispose()

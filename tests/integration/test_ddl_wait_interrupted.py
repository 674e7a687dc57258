"""Ctrl-C during `acmekit server db upgrade` on PostgreSQL while 0010's ADD COLUMN waits
for authorizations' lock (one of `migrate.ddl_briefly`'s tries): the command stops as
interrupted, not with an error of the connection the interrupt invalidated, and running
it again finishes the upgrade (docs/server.md, Upgrades)."""

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

pytestmark = pytest.mark.postgres

_WAITING = (
    "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'relation' "
    "AND relation = 'authorizations'::regclass "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "ca.db") as found:
        yield found


def _command(url: str) -> list[str]:
    return [sys.executable, "-m", "acmekit", "server", "db", "upgrade", "--db", url]


def test_ctrl_c_while_the_column_waits_stops_the_command_as_interrupted(url: str) -> None:
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, SERVER, "0009")
        with engine.connect() as holder:
            holder.exec_driver_sql("LOCK TABLE authorizations IN ACCESS SHARE MODE")
            proc = subprocess.Popen(_command(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            with engine.connect() as conn:
                while proc.poll() is None and not conn.execute(sa.text(_WAITING)).scalar():
                    conn.rollback()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(0.02)
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            holder.rollback()
        assert proc.returncode != 0
        assert "acmekit: aborted" in err.decode()
        assert "Error" not in err.decode()
        assert migrate.current(engine, SERVER) == "0009"
        again = subprocess.run(_command(url), capture_output=True, check=True, timeout=60)
        assert b"went from 0009 to" in again.stdout
    finally:
        engine.dispose()

"""Ctrl-C during `acmekit server db upgrade` on PostgreSQL, in 0012's fill: the command
stops as interrupted (not with an error of the connection the interrupt invalidated), the
upgrade's lock goes with its session, and running the command again finishes the upgrade
(docs/server.md, Upgrades)."""

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

_WAITING = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid "
    "WHERE NOT l.granted AND l.locktype = 'transactionid' AND s.datname = current_database()"
)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "ca.db") as found:
        yield found


def _command(url: str) -> list[str]:
    return [sys.executable, "-m", "acmekit", "server", "db", "upgrade", "--db", url]


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
            proc = subprocess.Popen(_command(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            with engine.connect() as conn:
                while proc.poll() is None and not conn.execute(sa.text(_WAITING)).scalar():
                    conn.rollback()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(0.05)
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            row.rollback()
        assert proc.returncode != 0
        assert "acmekit: aborted" in err.decode()
        assert "Error" not in err.decode()
        assert migrate.current(engine, SERVER) == "0011"
        again = subprocess.run(_command(url), capture_output=True, check=True, timeout=60)
        assert b"went from 0011 to 0012" in again.stdout
    finally:
        engine.dispose()

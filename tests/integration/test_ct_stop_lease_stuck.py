"""SIGTERM ends `acmekit ct` while its sequencer waits in the database for the lease's
row (another session holds it, as a half-open connection would): the lease's release
and the sequencing pass stuck there must not keep the process alive."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.database import create_engine
from acmekit_testkit.ctlog import ca_hierarchy, running_ct_log
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.processes import log_tail, wait_until
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.postgres

WAITING = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid "
    "WHERE NOT l.granted AND s.datname = current_database()"
)


def test_sigterm_ends_the_log_while_its_sequencer_waits_for_the_lease(tmp_path: Path) -> None:
    require_postgres_or_skip()
    ca_hierarchy(tmp_path / "ca")  # writes the roots file
    roots = tmp_path / "ca" / "root.pem"
    with fresh_postgres_database("acmekit_ct") as url:
        engine = create_engine(url)
        with engine.connect() as holder, running_ct_log(tmp_path / "log", roots, db=url) as log:
            with engine.connect() as conn:
                wait_until(
                    "the log holds the lease",
                    lambda: (
                        conn.execute(sa.text("SELECT count(*) FROM ct_leases")).scalar_one() == 1
                    ),
                    30,
                    [log.output],
                )
            holder.execute(sa.text("SELECT * FROM ct_leases FOR UPDATE"))
            with engine.connect() as conn:
                wait_until(
                    "the sequencer waits for the lease's row",
                    lambda: conn.execute(sa.text(WAITING)).scalar_one() >= 1,
                    30,
                    [log.output],
                )
            log.process.send_signal(signal.SIGTERM)
            try:
                log.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail("one SIGTERM did not end the log:\n" + log_tail(log.output))
            finally:
                holder.rollback()
        engine.dispose()

"""A database error while the fleet writes a private key (the order's key on the site's
row, or a new certificate version with its key) does not put the key in the log: the
error's text quotes the statement, and without `hide_parameters` its parameters too.

The errors are real ones from SQLite, made by triggers on the writes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

START = datetime(2025, 1, 1, tzinfo=UTC)

TRIGGERS = {
    # RAISE fails the statement (as a constraint); a body naming a missing table fails
    # every statement the trigger is compiled into (an error no caller expects).
    "order key": "BEFORE UPDATE ON fleet_sites WHEN NEW.order_key_pem IS NOT NULL "
    "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
    "certificate version": "BEFORE INSERT ON fleet_certificates "
    "BEGIN INSERT INTO nowhere VALUES (1); END",
}


@pytest.mark.parametrize("write", sorted(TRIGGERS))
async def test_a_failed_key_write_logs_no_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, write: str
) -> None:
    clock = FakeClock(START)
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    with inventory.engine.begin() as c:
        c.execute(sa.text(f"CREATE TRIGGER fail {TRIGGERS[write]}"))
    (site_id,) = inventory.sites.add_sites([("a.keys.test",)], ChallengeMethod.HTTP_01, 0)
    worker = Worker(
        inventory, LocalIssuer(now=clock.now), [MemoryEdge("e")], clock, WorkerConfig(owner="w")
    )
    caplog.set_level("DEBUG")
    assert await worker.run_once() == 1
    assert "unexpected failure" in caplog.text  # the write failed, and was logged
    assert "fleet_" in caplog.text  # the statement is quoted
    assert "PRIVATE KEY" not in caplog.text
    site = inventory.sites.site(site_id)
    assert site is not None and site.lease_owner is None  # released, to be tried again
    inventory.close()

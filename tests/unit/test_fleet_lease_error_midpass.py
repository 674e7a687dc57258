"""A lease that fails in the middle of a pass (the database failing for a moment) does
not cancel the turns the worker is running: the sites it holds are finished (their
orders and deployments were under way), and the pass ends after them.

The failure is a real one from SQLite: a trigger fails the lease of one site; the edges
keep files in memory, one holding a deployment until told."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, HeldEdge, LocalIssuer, MemoryEdge
from acmekit_testkit.waits import until

START = datetime(2025, 1, 1, tzinfo=UTC)


async def test_a_failed_lease_leaves_the_held_turns_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(START)
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    issuer = LocalIssuer(now=clock.now)
    first = MemoryEdge("first")
    held = inventory.sites.add_sites(
        [("a.pass.test",), ("b.pass.test",)], ChallengeMethod.HTTP_01, 0
    )
    assert await Worker(inventory, issuer, [first], clock, WorkerConfig(owner="zero")).run_once()
    now = to_us(clock.now())
    for site_id in held:
        assert inventory.sites.force_renewal(site_id, now - 1000)
    (late,) = inventory.sites.add_sites([("c.pass.test",)], ChallengeMethod.HTTP_01, now)
    with inventory.engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TRIGGER down BEFORE UPDATE ON fleet_sites "
                f"WHEN NEW.lease_owner = 'one' AND OLD.id = '{late}' "
                "BEGIN SELECT RAISE(ABORT, 'the database is down'); END"
            )
        )
    second = HeldEdge("second", hold=True)
    config = WorkerConfig(owner="one", batch=2)
    one = asyncio.create_task(Worker(inventory, issuer, [first, second], clock, config).run_once())
    await until(lambda: "the database is down" in caplog.text or one.done())
    assert not one.done()  # the turn held in its deployment goes on
    second.go.set()
    assert await one == 2
    assert set(second.files) == {"a.pass.test", "b.pass.test"}
    inventory.close()

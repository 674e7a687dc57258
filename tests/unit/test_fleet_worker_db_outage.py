"""A worker outlives a database that fails it for a while (a restart, a failover): a
pass that fails is logged and the next begins after the idle sleep, rather than the
worker (and with it `fleet serve`'s API and http-01 responder) ending.

The failure is a real one from SQLite: a trigger fails every lease until it is dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.clock import SystemClock
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import LocalIssuer, MemoryEdge
from acmekit_testkit.waits import until


async def test_the_worker_goes_on_after_failed_passes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SystemClock()
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    with inventory.engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TRIGGER down BEFORE UPDATE ON fleet_sites WHEN NEW.lease_owner = 'w' "
                "BEGIN SELECT RAISE(ABORT, 'the database is down'); END"
            )
        )
    (site_id,) = inventory.sites.add_sites([("a.outage.test",)], ChallengeMethod.HTTP_01, 0)
    config = WorkerConfig(owner="w", idle_sleep=0.01)
    worker = Worker(inventory, LocalIssuer(now=clock.now), [MemoryEdge("e")], clock, config)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: caplog.text.count("the database is down") >= 2 or running.done())
        assert not running.done()  # two passes failed, and the worker is still there
        with inventory.engine.begin() as c:
            c.execute(sa.text("DROP TRIGGER down"))

        def issued() -> bool:
            site = inventory.sites.site(site_id)
            return running.done() or (site is not None and site.current_version == 1)

        await until(issued)
        assert not running.done()
    finally:
        stop.set()
        worker.wake()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 30)
        inventory.close()

"""The inventory's PostgreSQL pool pings no connection in use, only one that sat idle
(`Inventory.from_url`: `ping_idle`): a connection the server dropped while it was
idle (as in a restart) is replaced before a statement is sent on it, so the worker's
next transaction succeeds; and the limit reads return the most recent counts only."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from acmekit.fleet import inventory as inventory_module
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod
from acmekit_testkit.databases import fresh_postgres_database

pytestmark = pytest.mark.postgres


def _backend_pid(inventory: Inventory) -> int:
    with inventory.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_dropped_while_idle_is_replaced_before_use() -> None:
    with fresh_postgres_database() as url:
        inventory = Inventory.from_url(url)
        try:
            site = inventory.sites.add_site(["idle.fleet.test"], ChallengeMethod.HTTP_01, 1)
            before = _backend_pid(inventory)
            admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
            with admin.connect() as conn:
                killed = conn.execute(
                    sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before}
                ).scalar_one()
            admin.dispose()
            assert killed is True
            time.sleep(inventory_module.PING_IDLE + 0.2)
            found = inventory.sites.site(site.id)  # no error: the dead one was replaced
            assert found is not None and found.id == site.id
            assert _backend_pid(inventory) != before
        finally:
            inventory.close()


def test_limit_reads_return_the_most_recent_counts_per_domain() -> None:
    with fresh_postgres_database() as url:
        inventory = Inventory.from_url(url)
        try:
            for at in range(1, 8):  # seven reservations for each of two domains
                assert inventory.cas.reserve(
                    "ca", f"site{at}", ["a.test", "b.test"], at, None, (0, 0)
                )
            everything = inventory.cas.usage("ca", ["a.test", "b.test"], 0, 0)
            latest = inventory.cas.usage("ca", ["a.test", "b.test"], 0, 0, latest=3)
            assert sorted(everything["a.test"]) == list(range(1, 8))
            assert sorted(latest["a.test"]) == [5, 6, 7]
            assert sorted(latest["b.test"]) == [5, 6, 7]
            assert inventory.cas.usage("ca", ["c.test"], 0, 0, latest=3) == {"c.test": []}
        finally:
            inventory.close()

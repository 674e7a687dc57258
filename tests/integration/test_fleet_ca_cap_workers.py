"""Two `acmekit fleet worker` processes on one PostgreSQL inventory, against `acmekit
server` as a process, keep one cap on the orders in flight at the CA between them.

The CA is given with `--ca NAME=URL,concurrency=2`; each worker could handle 4 sites at
once. The sites are added once both workers run, so both take some. Read back from the
CA's own database (each order from its creation to its certificate's signing, which
lie inside the time its worker held a slot), never more than 2 orders were open at
once; each worker alone would have let 2 through. The inventory's hourly figures for
the CA count the orders of both workers, and a status page collected by another
client (as `fleet serve` does) shows them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod, SiteState, to_us
from acmekit.fleet.status import collect, render
from acmekit_testkit.acmekit_server import ServerHandle
from acmekit_testkit.fleet_workers import WorkerProcess, fleet_worker_process, worker_peers
from acmekit_testkit.processes import wait_until

pytestmark = pytest.mark.postgres

CA = "capped"
CAP = 2
SITES = 24
# Each signature held back this long: CAP slots then issue at most CAP / ISSUANCE_DELAY
# sites a second. A worker that found nothing due sleeps 2 s (WorkerConfig.idle_sleep)
# and holds at most its batch (8), so by the time the second worker looks, the first
# has issued at most 2 * 2 / 0.3 = 13 sites and holds 8: some are left due for the
# second. Without it a fast machine let the first worker issue all 24 alone.
ISSUANCE_DELAY = 0.3


def _now() -> int:
    return to_us(datetime.now(UTC))


def capped_worker(
    workdir: Path, db: str, ca: ServerHandle
) -> AbstractContextManager[WorkerProcess]:
    """`acmekit fleet worker` with the CA capped, once it runs. Stopped by PID."""
    ca_spec = f"{CA}={ca.directory_url},ca-bundle={ca.root_path},concurrency={CAP}"
    args = ["--ca", ca_spec, "--batch", "8", "--concurrency", "4"]
    return fleet_worker_process(workdir, db=db, args=args)


def _orders_at_the_ca(state_dir: Path) -> list[tuple[int, int | None]]:
    """(created, certificate signed or None) of every order, from the CA's database."""
    engine = sa.create_engine(f"sqlite:///{state_dir / 'acmekit.db'}")
    query = sa.text(
        "SELECT o.created, c.issued FROM orders o LEFT JOIN certificates c ON c.order_id = o.id"
    )
    with engine.connect() as conn:
        found = [(int(a), None if b is None else int(b)) for a, b in conn.execute(query)]
    engine.dispose()
    return found


def most_open_at_once(spans: list[tuple[int, int]]) -> int:
    """The most spans (start, end) open at one time; one ending as another starts does
    not overlap it."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = open_now = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    return most


def test_most_open_at_once() -> None:
    assert most_open_at_once([(0, 2), (2, 4), (1, 3)]) == 2
    assert most_open_at_once([(0, 9), (1, 2), (3, 4), (5, 6)]) == 2


def test_two_worker_processes_keep_one_cap_at_the_ca(tmp_path: Path) -> None:
    names = [(f"s{i}.cap{i}.test", f"www.s{i}.cap{i}.test") for i in range(SITES)]
    with (
        worker_peers(tmp_path, {"issuance_delay": ISSUANCE_DELAY}) as (db, ca),
        capped_worker(tmp_path, db, ca) as one,
        capped_worker(tmp_path, db, ca) as two,
    ):
        inventory = Inventory.from_url(db)
        ids = inventory.sites.add_sites(names, ChallengeMethod.HTTP_01, _now())

        def all_active() -> bool:
            return inventory.sites.counts_by_state()[SiteState.ACTIVE] == SITES

        wait_until("every site active", all_active, 240, [one.log, two.log])
        for log in (one.log, two.log):  # both workers issued some
            assert f"version 1 from {CA}" in log.read_text(), log.read_text()[-3000:]

        orders = _orders_at_the_ca(ca.state_dir)
        assert len(orders) == SITES and all(end is not None for _, end in orders), orders
        spans = [(start, end) for start, end in orders if end is not None]
        assert most_open_at_once(spans) <= CAP
        assert inventory.cas.slots_held(CA, _now()) == {}

        # Workers write their hourly figures every 10 s of a pass and at its end, so the
        # last orders reach them a little after the last site went active.
        def all_counted() -> bool:
            report = collect(inventory, FleetMetrics(), _now(), [CA])
            return sum(r.issued + r.failed for r in report.recent) >= SITES

        wait_until("every order counted", all_counted, 60, [one.log, two.log])
        report = collect(inventory, FleetMetrics(), _now(), [CA])
        [recent] = report.recent
        assert (recent.ca, recent.issued, recent.failed) == (CA, SITES, 0)
        assert f'<td>{CA}</td><td class="n">{SITES}</td><td class="n">0</td>' in render(report)
        assert sorted(s.id for s in inventory.sites.page(limit=SITES)) == sorted(ids)
        inventory.close()

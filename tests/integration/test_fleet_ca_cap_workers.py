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

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod, SiteState, to_us
from acmekit.fleet.status import collect, render
from support.acmekit_server import ServerHandle, running_acmekit_server
from support.databases import fresh_postgres_database
from support.dnsserver import dns_server_process
from support.fleet_workers import fleet_http01_responder
from support.pebble import stop_process

pytestmark = pytest.mark.postgres

CA = "capped"
CAP = 2
SITES = 24


def _now() -> int:
    return to_us(datetime.now(UTC))


@contextmanager
def capped_worker(workdir: Path, db: str, ca: ServerHandle, tag: str) -> Iterator[Path]:
    """`acmekit fleet worker` with the CA capped; its log, once it runs. Stopped by PID."""
    argv = [
        sys.executable, "-m", "acmekit", "-v", "fleet", "worker",
        "--db", db,
        "--ca", f"{CA}={ca.directory_url},ca-bundle={ca.root_path},concurrency={CAP}",
        "--batch", "8", "--concurrency", "4",
    ]  # fmt: skip
    log = workdir / f"fleet-worker-{tag}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait("the worker to start", lambda: "worker: " in log.read_text(), 30, [log])
        yield log
    finally:
        stop_process(proc)


def _wait(what: str, check: Callable[[], bool], timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tails = "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)
    raise AssertionError(f"{what} did not happen\n{tails}")


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
        fresh_postgres_database() as db,
        fleet_http01_responder(db) as http01,
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(tmp_path, dns_port=dns.dns_port, http01_port=http01) as ca,
        capped_worker(tmp_path, db, ca, "one") as one,
        capped_worker(tmp_path, db, ca, "two") as two,
    ):
        inventory = Inventory.from_url(db)
        ids = inventory.add_sites(names, ChallengeMethod.HTTP_01, _now())

        def all_active() -> bool:
            return inventory.counts_by_state()[SiteState.ACTIVE] == SITES

        _wait("every site active", all_active, 240, [one, two])
        for log in (one, two):  # both workers issued some
            assert f"version 1 from {CA}" in log.read_text(), log.read_text()[-3000:]

        orders = _orders_at_the_ca(ca.state_dir)
        assert len(orders) == SITES and all(end is not None for _, end in orders), orders
        spans = [(start, end) for start, end in orders if end is not None]
        assert most_open_at_once(spans) <= CAP
        assert inventory.ca_slots_held(CA, _now()) == {}

        report = collect(inventory, FleetMetrics(), _now(), [CA])
        [recent] = report.recent
        assert (recent.ca, recent.issued, recent.failed) == (CA, SITES, 0)
        assert f'<td>{CA}</td><td class="n">{SITES}</td><td class="n">0</td>' in render(report)
        assert sorted(s.id for s in inventory.sites(limit=SITES)) == sorted(ids)
        inventory.close()

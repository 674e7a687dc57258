"""The fleet manager's side of bench/fleet.py, run as its own process so that its memory
is the manager's alone: open the inventory, lease batches of due sites exactly as the
worker does (`SiteRepository.lease_due`), and report on stdout, as one JSON object, the call
latencies, the resident memory (VmRSS from /proc/self/status) at each step, and the
database's plan for the statement the lease sent.

The statement is captured from the engine (`before_cursor_execute`), so the plan shown is
of the SQL the worker really sends, with its real parameters. On PostgreSQL it is
`EXPLAIN (ANALYZE, BUFFERS)` inside a transaction that is rolled back, so explaining
leases nothing; on SQLite it is `EXPLAIN QUERY PLAN`.

`now` is the real time plus OFFSET_SECONDS (negative: a time before any site is due).

Run: `python bench/_fleet_probe.py DB_URL BATCH CALLS [LEASE_SECONDS [OFFSET_SECONDS]]`
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import to_us


def rss_kib() -> int:
    """This process's resident set size in KiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def now_us() -> int:
    return to_us(datetime.now(UTC))


class Capture:
    """The last lease statement the engine sent, and its parameters."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statement = ""
        self.parameters: Any = None
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE") and "LIMIT" in statement.upper():
            self.statement, self.parameters = statement, parameters


def explain(engine: sa.Engine, capture: Capture) -> list[str]:
    """The plan of the captured lease statement (nothing is leased by explaining it)."""
    if not capture.statement:
        return ["(no lease statement was captured)"]
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            rows = conn.exec_driver_sql(prefix + capture.statement, capture.parameters).all()
        finally:
            tx.rollback()
    if postgres:
        return [str(r[0]) for r in rows]
    return [f"{'  ' * _depth(rows, r[0])}{r[-1]}" for r in rows]


def _depth(rows: Sequence[Any], node: int) -> int:
    parents = {r[0]: r[1] for r in rows}
    depth = 0
    while parents.get(node, 0):
        node, depth = parents[node], depth + 1
    return depth


def main(argv: list[str]) -> int:
    url, batch, calls = argv[0], int(argv[1]), int(argv[2])
    lease_us = int(float(argv[3]) * 1_000_000) if len(argv) > 3 else 15 * 60 * 1_000_000
    offset_us = int(float(argv[4]) * 1_000_000) if len(argv) > 4 else 0
    report: dict[str, Any] = {"rss_start_kib": rss_kib()}
    inventory = Inventory.from_url(url)
    capture = Capture(inventory.engine)
    started = time.perf_counter()
    inventory.sites.next_due()
    report["next_due_ms"] = (time.perf_counter() - started) * 1000
    report["rss_open_kib"] = rss_kib()
    latencies: list[float] = []
    rss: list[int] = []
    leased = 0
    for _ in range(calls):
        started = time.perf_counter()
        got = inventory.sites.lease_due("bench-probe", now_us() + offset_us, lease_us, batch)
        latencies.append((time.perf_counter() - started) * 1000)
        rss.append(rss_kib())
        leased += len(got)
    report.update(
        latencies_ms=latencies,
        rss_kib=rss,
        leased=leased,
        plan=explain(inventory.engine, capture),
        statement=capture.statement,
    )
    inventory.close()
    report["rss_end_kib"] = rss_kib()
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

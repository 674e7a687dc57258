"""Fleet scale benchmark: a large inventory imported, leased from, and held in memory.

What it measures, for each inventory size (10k, 100k and 1M sites by default) and backend
(PostgreSQL; SQLite with `--backends postgresql,sqlite`):

1. Bulk import: `acmekit fleet add --db URL --from-file FILE` run as a child process on a
   file of one site per line, so the code measured is the command's own. Wall time, sites
   per second, CPU seconds (utime + stime) and the peak resident memory of the importer
   (ru_maxrss from wait4). Beside it, at the largest PostgreSQL size, a reference: the
   same rows written with PostgreSQL's COPY into the same table and indexes (`--no-copy`
   skips it), to show how far the command is from the database's own bulk path.
2. Leasing: the time for `SiteRepository.lease_due(owner, now, lease, BATCH)`, the call the
   worker makes each pass, in three states of the inventory:
   - `fresh`: just imported, every site due (the worst case for the planner: the
     predicate `next_action_at <= now` matches every row);
   - `steady`: `next_action_at` spread uniformly over 60 days of which the last 3 are
     past (5% due: a manager that was down for three days);
   - `idle`: nothing due (the worker's poll while waiting).
   Median, p99 and max over the calls, and the plan of the statement the worker sent
   (PostgreSQL `EXPLAIN (ANALYZE, BUFFERS)`, rolled back; SQLite `EXPLAIN QUERY PLAN`).
3. Memory: the leasing runs in a separate process (bench/_fleet_probe.py), the fleet
   manager's side, which reads its own VmRSS from /proc/self/status after opening the
   inventory and after every batch. If the manager held anything per site, its RSS would
   grow with the inventory size; the table shows it at each size.

Before `steady` and `idle` the bench itself rewrites `next_action_at` with one UPDATE
(this is setup, not measured) followed by VACUUM ANALYZE (PostgreSQL) or ANALYZE (SQLite),
as autovacuum would do. The `fresh` state is measured right after the import, with
whatever statistics the database has gathered by then, as a worker would meet it.

Optionally (`--e2e N`), N sites are provisioned end to end: `acmekit server` (rate limits
off, via `[rate_limits] enabled = false` in its --config) validating http-01 against
`acmekit fleet serve` on loopback, with pebble-challtestsrv answering every name with
127.0.0.1. The N names (`eI.dK.e2e.test`) share one registered domain. Sites per
second; CPU ms per site of the fleet process, of the CA and of the DNS server (each
process and its children, from /proc); the inventory's transactions per site (from
pg_stat_database). `--profile FILE` samples the fleet process with py-spy meanwhile
(the GIL holder only, so CPU rather than waiting): a flame graph if FILE ends in .svg,
else collapsed stacks.

Optionally (`--caddy N`), N names are issued on demand at a Caddy edge, one after
another: the time from a name's first handshake at Caddy to a handshake that verifies
(bench/_fleet_caddy.py). `--sizes ''` skips the inventory sizes.

Every database is created for the run and dropped at the end; every process is started
here on 127.0.0.1 and stopped by its PID.

Run: `.venv/bin/python bench/fleet.py [--sizes 10000,100000,1000000] [--batch 100]
[--calls 1000] [--backends postgresql,sqlite] [--no-copy] [--e2e 500] [--profile FILE]
[--caddy 10]`
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from _common import fresh_database as _fresh_database
from _fleet_caddy import run_caddy
from _fleet_e2e import E2eResult, run_e2e
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.schema import sites as inventory_sites

BENCH = Path(__file__).resolve().parent
ACMEKIT = str(Path(sys.executable).with_name("acmekit"))
DAY_US = 86_400 * 1_000_000
SPAN_US = 60 * DAY_US  # steady state: next actions spread over 60 days
BACKLOG_US = 3 * DAY_US  # ... of which the first 3 are already past (5% due)


# ---------------------------------------------------------------- databases


def fresh_database(backend: str, workdir: Path) -> AbstractContextManager[str]:
    """A new, empty database for the inventory (a uniquely named SQLite file, or a
    PostgreSQL database); its URL; removed afterwards."""
    filename = f"fleet-{secrets.token_hex(4)}.db"
    return _fresh_database(backend, workdir, filename, prefix="acmekit_bench")


def engine_for(url: str) -> sa.Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


def database_bytes(url: str) -> int:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_total_relation_size('fleet_sites')"))
            return int(size.scalar_one())
    finally:
        engine.dispose()


def spread_next_actions(url: str, now_us: int) -> None:
    """Setup for `steady`: next actions uniform over [now - 3 days, now + 57 days)."""
    engine = engine_for(url)
    base = now_us - BACKLOG_US
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(
                    sa.text(
                        "UPDATE fleet_sites SET next_action_at ="
                        " :base + floor(random() * :span)::bigint"
                    ),
                    {"base": base, "span": SPAN_US},
                )
                conn.execute(sa.text("VACUUM ANALYZE fleet_sites"))
            else:
                conn.execute(
                    sa.text(
                        "UPDATE fleet_sites SET next_action_at = :base + abs(random()) % :span"
                    ),
                    {"base": base, "span": SPAN_US},
                )
                conn.execute(sa.text("ANALYZE"))
    finally:
        engine.dispose()


# ---------------------------------------------------------------- import


@dataclass(frozen=True)
class Import:
    sites: int
    wall: float
    cpu: float
    peak_rss_kib: int
    db_bytes: int

    @property
    def per_second(self) -> float:
        return self.sites / self.wall


def write_names(path: Path, count: int) -> None:
    """One site per line; names share 20 registered domains."""
    with path.open("w") as out:
        for start in range(0, count, 10_000):
            stop = min(count, start + 10_000)
            out.write("".join(f"s{i}.d{i % 20}.bench.test\n" for i in range(start, stop)))


def copy_reference(url: str, names: Path, count: int) -> Import:
    """The database's own bulk path, for comparison: PostgreSQL COPY of the same rows into
    the same table and indexes, from this process, without validating the names."""
    Inventory.from_url(url).close()  # the schema, as the inventory creates it
    columns = [c.name for c in inventory_sites.c]
    started = time.perf_counter()
    cpu = time.process_time()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        sql = f"COPY fleet_sites ({', '.join(columns)}) FROM STDIN"
        with cur.copy(sql) as copy, names.open() as lines:
            for line in lines:
                name = line.strip()
                row = {
                    "id": secrets.token_hex(8),
                    "names": json.dumps([name]),
                    "primary_name": name,
                    "method": "http-01",
                    "desired": "active",
                    "state": "pending",
                    "created": now_us(),
                    "next_action_at": now_us(),
                    "current_version": 0,
                    "failure_count": 0,
                }
                copy.write_row([row.get(c) for c in columns])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Import(count, wall, cpu, 0, database_bytes(url))


def bulk_import(url: str, names: Path, count: int) -> Import:
    """`acmekit fleet add --from-file` in a child; its wall, CPU and peak RSS."""
    argv = [ACMEKIT, "fleet", "add", "--db", url, "--from-file", str(names)]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0 or f"added {count} sites" not in text:
        raise RuntimeError(f"import failed ({proc.returncode}):\n{text[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return Import(count, wall, cpu, usage.ru_maxrss, database_bytes(url))


# ---------------------------------------------------------------- leasing


@dataclass(frozen=True)
class Leasing:
    scenario: str
    latencies_ms: list[float]
    leased: int
    rss_open_kib: int
    rss_kib: list[int]
    plan: list[str]
    next_due_ms: float

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def rss_last_kib(self) -> int:
        return self.rss_kib[-1] if self.rss_kib else self.rss_open_kib


def lease_batches(url: str, scenario: str, batch: int, calls: int, offset_s: float) -> Leasing:
    """The manager-side probe in its own process (see bench/_fleet_probe.py)."""
    argv = [
        sys.executable,
        str(BENCH / "_fleet_probe.py"),
        url,
        str(batch),
        str(calls),
        "900",
        str(offset_s),
    ]
    done = subprocess.run(argv, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"probe failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
    got: dict[str, Any] = json.loads(done.stdout)
    return Leasing(
        scenario,
        got["latencies_ms"],
        got["leased"],
        got["rss_open_kib"],
        got["rss_kib"],
        got["plan"],
        got["next_due_ms"],
    )


# ---------------------------------------------------------------- one size


@dataclass
class SizeResult:
    backend: str
    sites: int
    imported: Import
    leasing: list[Leasing] = field(default_factory=list)
    setup_s: float = 0.0
    reference: Import | None = None


def now_us() -> int:
    return time.time_ns() // 1000


def run_size(backend: str, sites: int, args: argparse.Namespace, workdir: Path) -> SizeResult:
    names = workdir / f"names-{sites}.txt"
    write_names(names, sites)
    try:
        with fresh_database(backend, workdir) as url:
            log(f"{backend} {sites}: importing")
            result = SizeResult(backend, sites, bulk_import(url, names, sites))
            log(f"{backend} {sites}: {result.imported.wall:.1f} s; leasing")
            fresh_calls = max(1, min(args.calls, sites // args.batch // 2))
            result.leasing.append(lease_batches(url, "fresh", args.batch, fresh_calls, 0))
            started = time.perf_counter()
            spread_next_actions(url, now_us())
            result.setup_s = time.perf_counter() - started
            due = sites * BACKLOG_US // SPAN_US
            steady_calls = max(1, min(args.calls, due // args.batch // 2))
            result.leasing.append(lease_batches(url, "steady", args.batch, steady_calls, 0))
            idle_offset = -(BACKLOG_US / 1e6 + 3600)  # an hour before the earliest action
            result.leasing.append(lease_batches(url, "idle", args.batch, args.calls, idle_offset))
            if backend == "postgresql" and sites == max(args.size_list) and args.copy:
                with fresh_database(backend, workdir) as other:
                    log(f"{backend} {sites}: COPY reference")
                    result.reference = copy_reference(other, names, sites)
            return result
    finally:
        names.unlink(missing_ok=True)


# ---------------------------------------------------------------- report


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def report(results: list[SizeResult], args: argparse.Namespace, e2e: E2eResult | None) -> None:
    print(
        f"\nFleet scale benchmark: {os.cpu_count()} CPU cores; the importer, the manager"
        " probe and the database share them."
    )
    print(
        f"Lease batch {args.batch} sites, lease 15 min; up to {args.calls} lease calls per"
        " state (fewer when fewer sites are due).\n"
    )
    head = (
        f"{'backend':<10} {'sites':>9} {'import s':>9} {'sites/s':>8} {'CPU s':>7}"
        f" {'imp. RSS MiB':>12} {'table MiB':>9}"
    )
    print("Bulk import (`acmekit fleet add --from-file`):")
    print(head)
    for r in results:
        i = r.imported
        print(
            f"{r.backend:<10} {r.sites:>9,} {i.wall:>9.1f} {i.per_second:>8,.0f} {i.cpu:>7.1f}"
            f" {mib(i.peak_rss_kib):>12} {i.db_bytes / 2**20:>9.0f}"
        )
        if r.reference is not None:
            c = r.reference
            print(
                f"{'  COPY':<10} {r.sites:>9,} {c.wall:>9.1f} {c.per_second:>8,.0f} {c.cpu:>7.1f}"
                f" {'-':>12} {c.db_bytes / 2**20:>9.0f}"
                f"   reference; the command takes {i.wall / c.wall:.1f}x as long"
            )
    print("\nLeasing one batch (`SiteRepository.lease_due`), and the manager's VmRSS:")
    print(
        f"{'backend':<10} {'sites':>9} {'state':<7} {'calls':>6} {'leased':>7} {'p50 ms':>7}"
        f" {'p99 ms':>7} {'max ms':>7} {'min() ms':>8} {'RSS open':>9} {'RSS end':>8}"
        f" {'RSS max':>8}"
    )
    for r in results:
        for lease in r.leasing:
            print(
                f"{r.backend:<10} {r.sites:>9,} {lease.scenario:<7}"
                f" {len(lease.latencies_ms):>6} {lease.leased:>7}"
                f" {lease.median:>7.2f} {lease.pct(0.99):>7.2f} {max(lease.latencies_ms):>7.2f}"
                f" {lease.next_due_ms:>8.2f} {mib(lease.rss_open_kib):>9}"
                f" {mib(lease.rss_last_kib):>8} {mib(max(lease.rss_kib)):>8}"
            )
    print("(RSS in MiB; `min() ms` is SiteRepository.next_due, the dashboard's next action.)")
    largest: dict[str, SizeResult] = {}
    for r in results:
        if r.backend not in largest or r.sites > largest[r.backend].sites:
            largest[r.backend] = r
    for r in largest.values():
        for lease in r.leasing:
            print(
                f"\nPlan of the lease statement, {r.backend}, {r.sites:,} sites, {lease.scenario}:"
            )
            print("\n".join("  " + line for line in lease.plan))
    for backend, r in largest.items():
        if r.sites < 1_000_000:
            rate = r.imported.per_second
            print(
                f"\nEXTRAPOLATED, not measured: {backend} import of 1,000,000 sites at"
                f" {rate:,.0f} sites/s would take {1_000_000 / rate:.0f} s."
            )
    if e2e is not None:
        print("\n" + e2e.describe())


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="inventory sizes")
    parser.add_argument("--backends", default="postgresql", help="postgresql,sqlite")
    parser.add_argument("--batch", type=int, default=100, help="sites per lease [100]")
    parser.add_argument("--calls", type=int, default=1000, help="lease calls per state [1000]")
    parser.add_argument(
        "--no-copy", dest="copy", action="store_false", help="skip the COPY reference"
    )
    parser.add_argument("--e2e", type=int, default=0, help="sites provisioned end to end [0]")
    parser.add_argument(
        "--caddy", type=int, default=0, help="names issued on demand at a Caddy edge [0]"
    )
    parser.add_argument(
        "--profile", type=Path, help="with --e2e: py-spy profile of the fleet (.svg: flame graph)"
    )
    args = parser.parse_args(argv)
    args.size_list = [int(s) for s in args.sizes.split(",") if s]
    args.backend_list = [b for b in args.backends.split(",") if b]
    for backend in args.backend_list:
        if backend not in ("postgresql", "sqlite"):
            parser.error(f"unknown backend {backend!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[SizeResult] = []
    e2e: E2eResult | None = None
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        workdir = Path(tmp)
        for backend in args.backend_list:
            for sites in args.size_list:
                results.append(run_size(backend, sites, args, workdir))
        if args.e2e:
            log(f"e2e: {args.e2e} sites")
            with fresh_database("postgresql", workdir) as url:
                engine = engine_for(url)
                try:
                    e2e = run_e2e(args.e2e, workdir, url, engine, args.profile)
                finally:
                    engine.dispose()
        caddy = run_caddy(args.caddy, workdir) if args.caddy else None
    report(results, args, e2e)
    if caddy is not None:
        print("\n" + caddy.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())

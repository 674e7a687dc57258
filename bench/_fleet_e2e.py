"""End-to-end provisioning for bench/fleet.py: N sites from `acmekit fleet add` to a
deployed certificate, through `acmekit fleet serve` and `acmekit server` on loopback.

The CA runs with rate limits off (bench/_common.running_acmekit writes
`[rate_limits] enabled = false` into its --config) and resolves every name to 127.0.0.1
through pebble-challtestsrv; it validates http-01 against the fleet's own responder
(`--http01-listen`), which answers from the inventory. The fleet deploys to one edge
directory. The inventory is a fresh PostgreSQL database; the names share one registered
domain (e2e.test). The clock starts when `fleet serve` is started (after the sites were added)
and stops when every site is active with its certificate on the edge; CPU is utime +
stime of each process and its children from /proc, read at both ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from _common import cpu_seconds, free_port, running_acmekit, running_challtestsrv, stop_process

ACMEKIT = str(Path(sys.executable).with_name("acmekit"))
PY_SPY = str(Path(sys.executable).with_name("py-spy"))
DEADLINE_PER_SITE = 2.0  # seconds; generous, only to stop a run that cannot finish
NOTE_FIRST = 10_000  # the size the figures are extrapolated to when fewer ran


@dataclass(frozen=True)
class E2eResult:
    sites: int
    active: int
    wall: float
    fleet_cpu: float
    ca_cpu: float
    dns_cpu: float
    states: dict[str, int]
    on_edge: int
    transactions: int  # committed and rolled back in the inventory's database

    @property
    def per_second(self) -> float:
        return self.active / self.wall if self.wall else 0.0

    def describe(self) -> str:
        per = max(self.active, 1)
        lines = [
            f"End to end, http-01, `acmekit fleet serve` + `acmekit server` on loopback:"
            f" {self.active}/{self.sites} sites active in {self.wall:.1f} s"
            f" = {self.per_second:.1f} sites/s",
            f"  CPU ms per site: fleet {self.fleet_cpu * 1000 / per:.1f},"
            f" CA {self.ca_cpu * 1000 / per:.1f}, DNS {self.dns_cpu * 1000 / per:.1f}"
            f" (cores: {os.cpu_count()}, shared by all three)",
            f"  final states: {self.states}; sites with a certificate on the edge: {self.on_edge};"
            f" inventory transactions per site: {self.transactions / per:.1f}",
        ]
        if self.sites < NOTE_FIRST and self.per_second:
            lines.append(
                f"  EXTRAPOLATED, not measured: {NOTE_FIRST:,} sites at this rate would take"
                f" {NOTE_FIRST / self.per_second / 60:.1f} min"
                f" and {(self.fleet_cpu + self.ca_cpu) * NOTE_FIRST / per:.0f} CPU s"
                " (fleet + CA)."
            )
        return "\n".join(lines)


def _wait_for(spy: subprocess.Popen[bytes]) -> None:
    """py-spy writes its flame graph when the process it samples ends."""
    try:
        spy.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop_process(spy)


def _transactions(engine: sa.Engine) -> int:
    """Transactions the inventory's database has seen so far (the statistics collector's
    count, committed and rolled back; it lags by up to a second)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                " WHERE datname = current_database()"
            )
        )
        return int(found.scalar_one())


def _states(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT state, count(*) FROM fleet_sites GROUP BY state"))
        return {str(state): int(n) for state, n in rows}


def _add_sites(db: str, count: int, workdir: Path) -> None:
    names = workdir / "e2e-names.txt"
    names.write_text("".join(f"e{i}.d{i % 20}.e2e.test\n" for i in range(count)))
    subprocess.run(
        [ACMEKIT, "fleet", "add", "--db", db, "--from-file", str(names)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run_e2e(
    count: int, workdir: Path, db: str, engine: sa.Engine, profile: Path | None = None
) -> E2eResult:
    """Provision `count` sites into the empty inventory at `db` (read through `engine`).
    With `profile`, py-spy samples the fleet process from outside (its own CPU is not
    counted in the fleet's) into that file: a flame graph if it ends in .svg, else
    collapsed stacks."""
    http_port = free_port()
    edge = workdir / "edge"
    edge.mkdir()
    _add_sites(db, count, workdir)
    with ExitStack() as stack:
        dns = stack.enter_context(running_challtestsrv(workdir))
        ca = stack.enter_context(
            running_acmekit(workdir, dns_port=dns.dns_port, http_port=http_port)
        )
        argv = [
            ACMEKIT, "fleet", "serve",
            "--db", db,
            "--server", ca.directory_url,
            "--ca-bundle", str(ca.root_path),
            "--listen", f"127.0.0.1:{free_port()}",
            "--http01-listen", f"127.0.0.1:{http_port}",
            "--edge", str(edge),
        ]  # fmt: skip
        log = workdir / "fleet.log"
        cpu_ca, cpu_dns = cpu_seconds(ca.pid), cpu_seconds(dns.pid)
        transactions = _transactions(engine)
        started = time.perf_counter()
        with log.open("wb") as out:
            fleet = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        if profile is not None:
            spy = subprocess.Popen(
                [PY_SPY, "record", "--pid", str(fleet.pid), "--output", str(profile),
                 "--rate", "200", "--nonblocking", "--gil",
                 "--format", "flamegraph" if profile.suffix == ".svg" else "raw"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            stack.callback(_wait_for, spy)  # after the fleet stops (callbacks run last first)
        stack.callback(stop_process, fleet)
        deadline = started + 30 + DEADLINE_PER_SITE * count
        states: dict[str, int] = {}
        fleet_cpu = 0.0
        while time.perf_counter() < deadline:
            if fleet.poll() is not None:
                raise RuntimeError(f"fleet serve exited:\n{log.read_text()[-3000:]}")
            fleet_cpu = cpu_seconds(fleet.pid)
            states = _states(engine)
            if states.get("active", 0) + states.get("failing", 0) >= count:
                break
            time.sleep(0.2)
        wall = time.perf_counter() - started
        ca_cpu = cpu_seconds(ca.pid) - cpu_ca
        dns_cpu = cpu_seconds(dns.pid) - cpu_dns
        time.sleep(1.0)  # the statistics collector's lag
        transactions = _transactions(engine) - transactions
    on_edge = sum(1 for site in edge.iterdir() if site.is_dir())
    active = states.get("active", 0)
    return E2eResult(count, active, wall, fleet_cpu, ca_cpu, dns_cpu, states, on_edge, transactions)

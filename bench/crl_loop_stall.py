"""How long the CA's event loop stalls while its CRL rebuilder remakes a big shard.

One shard (`[crl] shards = 1`) with `--entries` revoked certificates put straight into an
SQLite database; the app's `CrlRebuilder` runs on the loop as in the CA, and a ticker task
on the same loop sleeps 1 ms at a time and records the gaps between its wake-ups while the
rebuilder remakes the shard (one revocation marks it). Printed: the longest gap (the
longest stall of the loop), the time the loop lost in all (the sum of each gap beyond its
1 ms), the ticks, and the remaking's wall time; and, for comparison, the longest gap
and the share of time lost while the loop ticked idle for 2 s just before. Wall-clock
times, so they vary with the machine's load; run a few times.

    .venv/bin/python bench/crl_loop_stall.py [--entries 20000] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from acmekit.server.config import ServerConfig
from acmekit.server.crl import CrlRebuilder
from acmekit.server.run import assemble
from acmekit_testkit.crls import insert_revoked

PEM = "-----BEGIN CERTIFICATE-----\n" + "A" * 1000 + "\n-----END CERTIFICATE-----\n"
FIRST = 0x10000000
IDLE = 2.0  # seconds the ticker runs before the remaking, for the machine's own gaps


def _lost(gaps: list[float]) -> float:
    return sum(max(0.0, g - 0.001) for g in gaps)


async def _ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def _one_run(ca: object, run: int) -> tuple[float, float, int, float, float, float]:
    crl = ca.crl  # type: ignore[attr-defined]
    store = ca.store  # type: ignore[attr-defined]
    before = store.certificates.crl(0).number
    rebuilder = CrlRebuilder(crl)
    task = rebuilder.start()
    gaps: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(gaps, stop))
    await asyncio.sleep(IDLE)  # the loop's own gaps on this machine, nothing remade
    idle = list(gaps)
    gaps.clear()
    t0 = time.perf_counter()
    crl.revoked(FIRST + run)  # marks shard 0 and wakes the rebuilder
    # Polled as a relying party would; the ticker measures the loop meanwhile.
    while store.certificates.crl(0).number == before:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    wall = time.perf_counter() - t0
    stop.set()
    await ticker
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    rebuilder.stop()
    return max(gaps), _lost(gaps), len(gaps), wall, max(idle), _lost(idle) / IDLE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ca.db"
        config = ServerConfig(state_dir=Path(tmp) / "state", db=f"sqlite:///{db}")
        config = replace(config, crl=replace(config.crl, shards=1))
        ca = assemble(config)
        insert_revoked(ca.store.engine, range(FIRST, FIRST + args.entries), PEM, "c")
        ca.crl.refresh(force=True)  # files the rows; the first CRL, not measured
        for run in range(args.runs):
            stall, lost, ticks, wall, idle_stall, idle_share = asyncio.run(_one_run(ca, run))
            print(
                f"run {run}: {args.entries} entries; longest loop stall {stall * 1000:.0f} ms, "
                f"loop time lost {lost * 1000:.0f} ms, ticks {ticks}, remaking {wall:.2f} s; "
                f"idle before: longest gap {idle_stall * 1000:.0f} ms, "
                f"{idle_share * 100:.0f}% of the time lost"
            )
        ca.store.engine.dispose()


if __name__ == "__main__":
    main()

"""CT's cost to the CA, in process: CPU and instructions per certificate with two CT logs
against CT off, lint on and off.

The CA runs in this process as the component tests run it (the ASGI app called directly,
no listener or TLS; a real `acmekit dns`, a real http-01 responder and, for the CT
variants, two real `acmekit ct` logs, each its own process on loopback, whose CPU is
not counted). Each certificate is the ordinary flow, one after another (newOrder, the
authorization, the http-01 challenge, a poll, finalize, a poll of the order, the
download), as `bench/store_per_cert.py` drives it; rate limits off, SQLite, CAA on. The
variants: `nolint` and `lint` (CT off), `ct-nolint` and `ct-lint` (every certificate a
precertificate first, two SCTs verified and embedded, the final certificate's add-chain
after it).

    .venv/bin/python bench/ct_cost.py [--certs 100] [--rounds 2] [--variants ...]

prints the process CPU per certificate of each variant, the variants interleaved round
by round, and CT's ratio per pair (the least flattering pair across rounds too).

    .venv/bin/python bench/ct_cost.py --callgrind 4,12 [--jobs 2] [--variants ...]

runs each variant under `valgrind --tool=callgrind` twice, with N1 and N2 certificates
after the same warm-up, instrumentation switched on only around the measured
certificates (`callgrind_control -i`; start-up, imports and the warm-up run uncounted at
valgrind's base speed), and prints the instructions per certificate as the difference
of the two totals over N2 - N1 (what the switching itself costs cancels out): a count
that does not move with the machine's load, which is what decisions about CT's cost are
made by. Only the CA's process is counted, with the client's side of the flow in it,
so compare what CT adds between revisions rather than the ratios with the server's.

`--profile FILE` (with one variant) writes cProfile's statistics (thread CPU time) of the
measured phase, to find where the CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from _common import fresh_database
from acmekit.server.config import CtSettings, LintSettings, RateLimits, ServerConfig
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.acmekit_server import TEST_VALIDATION
from acmekit_testkit.ctlog import ca_hierarchy, running_ct_log
from acmekit_testkit.dnsserver import dns_server_process

VARIANTS = ("nolint", "ct-nolint", "lint", "ct-lint")
PAIRS = (("ct-nolint", "nolint"), ("ct-lint", "lint"))
WARM = 2  # certificates before the measured phase (first-use costs, the pools filled)


@dataclass(frozen=True)
class Setup:
    """What every variant shares: the CA's hierarchy (the logs accept its root), the
    DNS server, the http-01 responder's port and the logs' lists."""

    tmp: Path
    base: ServerConfig
    log_lists: tuple[str, ...]

    def config(self, variant: str) -> ServerConfig:
        lint = LintSettings(enabled=not variant.endswith("nolint"))
        ct = CtSettings(log_lists=self.log_lists) if variant.startswith("ct") else CtSettings()
        return replace(self.base, lint=lint, ct=ct)


@contextmanager
def peers(tmp: Path, responder_port: int, logs: int) -> Iterator[Setup]:
    with ExitStack() as stack:
        state = tmp / "ca"
        ca_hierarchy(state)
        (tmp / "dns").mkdir()
        dns = stack.enter_context(dns_server_process(tmp / "dns"))
        running = [
            stack.enter_context(running_ct_log(tmp / f"log{i}", state / "root.pem"))
            for i in range(logs)
        ]
        base = ServerConfig(
            state_dir=state,
            dns_resolver=f"127.0.0.1:{dns.dns_port}",
            http01_port=responder_port,
            validation_timeout=5.0,
            validation=TEST_VALIDATION,
            rate_limits=RateLimits(enabled=False),
        )
        yield Setup(tmp, base, tuple(str(log.log_list) for log in running))


@dataclass(frozen=True)
class Spent:
    """CPU seconds per certificate: in user space, and in the kernel (the loopback
    sockets' system calls, which no instruction count sees)."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system


async def measure(
    setup: Setup, variant: str, responder: Http01Responder, certs: int, profile: str | None
) -> Spent:
    """CPU per certificate of `certs` certificates after the warm-up."""
    with fresh_database("sqlite", setup.tmp, f"{variant}-{time.monotonic_ns()}.db") as url:
        assembly = assemble(replace(setup.config(variant), db=url))
        try:
            flow = Flow(RawAcme(assembly.app), responder)
            assert (await flow.account()).status == 201
            for i in range(WARM):
                await flow.one_certificate(f"warm{i}-{variant}.example.test")
            profiler = cProfile.Profile(time.thread_time) if profile else None
            _instrument("on")
            start = resource.getrusage(resource.RUSAGE_SELF)
            if profiler is not None:
                profiler.enable()
            for i in range(certs):
                await flow.one_certificate(f"c{i}-{variant}.example.test")
            await assembly.app.authority.drain()  # the add-chain tasks too
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
            end = resource.getrusage(resource.RUSAGE_SELF)
            _instrument("off")
        finally:
            await assembly.app.close()
            assembly.store.engine.dispose()
    user, system = end.ru_utime - start.ru_utime, end.ru_stime - start.ru_stime
    return Spent(user / certs, system / certs)


async def native(variants: list[str], certs: int, rounds: int, profile: str | None) -> None:
    responder = Http01Responder()
    await responder.start()
    spent: dict[str, list[Spent]] = {v: [] for v in variants}
    try:
        with tempfile.TemporaryDirectory(prefix="acmekit-ct-cost-") as tmp:
            logs = 2 if any(v.startswith("ct") for v in variants) else 0
            with peers(Path(tmp), responder.port, logs) as setup:
                for _ in range(rounds):
                    for v in variants:
                        spent[v].append(await measure(setup, v, responder, certs, profile))
    finally:
        await responder.stop()
    print(f"{certs} certificates per variant and round, in process, CPU ms per certificate")
    print("(user + system):")
    total = {v: [s.total for s in spent[v]] for v in variants}
    for v in variants:
        shown = ", ".join(f"{1000 * s.user:.2f} + {1000 * s.system:.2f}" for s in spent[v])
        print(f"  {v:<10} {shown}  (median {1000 * statistics.median(total[v]):.2f})")
    for ct, off in PAIRS:
        if ct in total and off in total:
            median = statistics.median(total[ct]) / statistics.median(total[off])
            worst = max(total[ct]) / min(total[off])
            print(f"  {ct}/{off}: x{median:.3f} by medians, least flattering x{worst:.3f}")


# ----------------------------------------------------------- under callgrind

_UNDER_CALLGRIND = "ACMEKIT_CT_COST_CALLGRIND"


def _instrument(state: str) -> None:
    """Under callgrind (started with instrumentation off), switch it on or off for this
    process: start-up, imports and the warm-up run at valgrind's base speed, uncounted.
    The process keeps running Python while it waits, so that valgrind sees the request."""
    if not os.environ.get(_UNDER_CALLGRIND):
        return
    argv = ["callgrind_control", "-i", state, str(os.getpid())]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        pass


_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)


def _instructions(variant: str, certs: int, tmp: Path) -> int:
    out = tmp / f"callgrind.{variant}.{certs}"
    argv = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        sys.executable, __file__, "--variants", variant, "--certs", str(certs), "--rounds", "1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0", _UNDER_CALLGRIND: "1"}
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} x{certs}: {done.stderr.decode(errors='replace')[-2000:]}")
    found = _TOTALS.search(out.read_bytes())
    if found is None:
        raise SystemExit(f"{out}: no totals")
    return int(found.group(1))


def under_callgrind(variants: list[str], counts: tuple[int, int], jobs: int) -> None:
    low, high = counts
    with tempfile.TemporaryDirectory(prefix="acmekit-ct-cost-cg-") as tmp:
        runs = [(v, n) for v in variants for n in counts]
        with ThreadPoolExecutor(jobs) as pool:
            totals = dict(
                zip(runs, pool.map(lambda r: _instructions(*r, Path(tmp)), runs), strict=True)
            )
    per = {v: (totals[(v, high)] - totals[(v, low)]) / (high - low) for v in variants}
    print(f"instructions per certificate (callgrind, {high} - {low} certificates):")
    for v in variants:
        print(f"  {v:<10} {per[v] / 1e6:9.2f} M")
    for ct, off in PAIRS:
        if ct in per and off in per:
            added = per[ct] - per[off]
            print(f"  {ct}/{off}: x{per[ct] / per[off]:.3f} (CT adds {added / 1e6:.2f} M)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--callgrind", default="", help="N1,N2: instructions per certificate")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at once")
    parser.add_argument("--profile", default=None, help="cProfile statistics to this file")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    if args.callgrind:
        low, high = (int(n) for n in args.callgrind.split(","))
        under_callgrind(variants, (low, high), args.jobs)
        return
    asyncio.run(native(variants, args.certs, args.rounds, args.profile))


if __name__ == "__main__":
    main()

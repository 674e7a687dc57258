"""MPIC benchmark: the CA's CPU per certificate with three local remote perspectives
against none, in the same run, and the perspectives' CPU reported apart.

How: two fresh `acmekit server`s on loopback, one with `[mpic]` on and three
`acmekit server perspective`s (ARIN, RIPE, APNIC), all asking one `acmekit dns` that
answers every name with 127.0.0.1. The same load runs against each: W workers, each with
one account (not measured), issue certificates one after another through the tests'
driver (`acmekit_testkit.acme_raw.Flow`: newOrder, http-01 served from this process,
poll the authorization every 50 ms, finalize, fetch). CPU is utime + stime from
/proc/PID/stat of each process and its descendants, read around the measured phase;
validation time is from the challenge POST until the authorization is valid, as the
client sees it (so it includes up to one 50 ms poll interval).

Run: `python bench/mpic.py [--workers 4] [--certs 40]`
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import cpu_seconds, free_port
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.perspectives import PerspectiveHandle, running_perspective
from acmekit_testkit.processes import wait_https

RIRS = {"bench-arin": "ARIN", "bench-ripe": "RIPE", "bench-apnic": "APNIC"}


@dataclass(frozen=True)
class Result:
    label: str
    certs: int
    seconds: float
    ca_cpu: float
    perspectives_cpu: float
    validation_ms: list[float]


@contextmanager
def running_ca(
    workdir: Path, dns_port: int, http01: int, perspectives: list[dict[str, str]] | None
) -> Iterator[ServerHandle]:
    settings: dict[str, Any] = {
        "rate_limits": {"enabled": False},
        "crl": {"listen": f"127.0.0.1:{free_port()}"},
    }
    if perspectives:
        settings["mpic"] = {"enabled": True, "perspectives": perspectives}
    with running_acmekit_server(
        workdir, dns_port=dns_port, http01_port=http01, state_dir=workdir / "ca-state",
        settings=settings, verbose=False,
    ) as ca:  # fmt: skip
        wait_https(ca.proc, ca.directory_url, ca.root_path, ca.log, "acmekit server")
        yield ca


async def worker(
    ca: ServerHandle, responder: Http01Responder, index: int, count: int, times: list[float]
) -> None:
    acme = HttpRawAcme(ca.base_url, str(ca.root_path))
    try:
        flow = Flow(acme, responder)
        await flow.account()
        for n in range(count):
            name = f"w{index}-{n}.mpic.bench.test"
            resp = await flow.order(name)
            order_url = resp.header("location") or ""
            start = time.perf_counter()
            await flow.solve(resp.json())
            times.append((time.perf_counter() - start) * 1000)
            done = await flow.finalize(order_url, (name,))
            assert done.status == 200, done.body
    finally:
        await acme.close()


async def measure(
    label: str,
    ca: ServerHandle,
    perspectives: list[PerspectiveHandle],
    responder: Http01Responder,
    workers: int,
    certs: int,
) -> Result:
    per_worker = max(1, certs // workers)
    times: list[float] = []
    before_ca = cpu_seconds(ca.proc.pid)
    before_p = sum(cpu_seconds(p.proc.pid) for p in perspectives)
    start = time.perf_counter()
    await asyncio.gather(*(worker(ca, responder, i, per_worker, times) for i in range(workers)))
    seconds = time.perf_counter() - start
    ca_cpu = cpu_seconds(ca.proc.pid) - before_ca
    p_cpu = sum(cpu_seconds(p.proc.pid) for p in perspectives) - before_p
    return Result(label, per_worker * workers, seconds, ca_cpu, p_cpu, times)


def report(result: Result) -> None:
    n = result.certs
    times = sorted(result.validation_ms)
    p95 = times[int(0.95 * (len(times) - 1))]
    print(
        f"{result.label:>16}: {n} certs in {result.seconds:.1f} s; CA CPU "
        f"{1000 * result.ca_cpu / n:.1f} ms/cert; perspectives' CPU "
        f"{1000 * result.perspectives_cpu / n:.1f} ms/cert; validation median "
        f"{statistics.median(times):.0f} ms, p95 {p95:.0f} ms"
    )


async def main(workers: int, certs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-mpic-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        http01 = free_port()
        dns = stack.enter_context(dns_server_process(workdir))
        responder = Http01Responder(port=http01)
        await responder.start()
        try:
            plain_dir, mpic_dir = workdir / "plain", workdir / "mpic"
            plain_dir.mkdir()
            mpic_dir.mkdir()
            perspectives = [
                stack.enter_context(
                    running_perspective(
                        mpic_dir, mpic_dir / "ca-state", name, rir, dns_port=dns.dns_port,
                        http01_port=http01,
                    )
                )
                for name, rir in RIRS.items()
            ]  # fmt: skip
            plain = stack.enter_context(running_ca(plain_dir, dns.dns_port, http01, None))
            entries = [p.settings() for p in perspectives]
            with_mpic = stack.enter_context(running_ca(mpic_dir, dns.dns_port, http01, entries))
            results = [
                await measure("no perspectives", plain, [], responder, workers, certs),
                await measure("3 perspectives", with_mpic, perspectives, responder, workers, certs),
            ]
        finally:
            await responder.stop()
    for result in results:
        report(result)
    base, more = results
    growth = (more.ca_cpu / more.certs) / (base.ca_cpu / base.certs) - 1
    print(f"CA CPU per certificate with three perspectives: {100 * growth:+.0f}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--certs", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.workers, args.certs))

"""MPIC benchmark: the CA's CPU per certificate with three local remote perspectives,
against the same CA without them and against Pebble, all in the same run; the
perspectives' CPU reported apart.

How: two fresh `acmekit server`s on loopback, one with `[mpic]` on and three
`acmekit server perspective`s (ARIN, RIPE, APNIC), and Debian's Pebble
(PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0, PEBBLE_AUTHZREUSE=0, as bench/server.py
runs it; Pebble has no remote perspectives), all asking one `acmekit dns` that answers
every name with 127.0.0.1. The same load runs against each, in rounds whose order
rotates: W workers, each with one account (not measured), issue certificates one after
another with a small driver that follows the directory (newOrder, http-01 served from
this process, poll the authorization every 50 ms, finalize, poll the order while it is
processing, download the certificate); each signed request uses the nonce of the
previous answer, as real clients do. CPU is utime + stime from /proc/PID/stat of each
process and its descendants, read around the measured phase.

On a machine shared with other work a server's CPU per certificate moves with the
neighbours' load, so after the rounds that run one server at a time, as many rounds run
all three servers at once (each with its own W workers): whatever the neighbours do then
weighs on the three alike. Each is reported per round and pooled over the rounds.

Validation time is from the challenge POST until the authorization is valid, as the
client sees it: under load (W workers, 50 ms polls, so it includes up to one poll
interval) and alone (one worker, polling every 5 ms; `--latency N` certificates).

Run: `python bench/mpic.py [--workers 4] [--certs 60] [--rounds 3] [--latency 20]`
(`--rounds` of each kind)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec

from _common import cpu_seconds, free_port, running_pebble
from acmekit.protocol import jose
from acmekit.protocol.challenges import key_authorization
from acmekit_testkit.acme_raw import Http01Responder
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.perspectives import running_perspective
from acmekit_testkit.processes import wait_https

RIRS = {"bench-arin": "ARIN", "bench-ripe": "RIPE", "bench-apnic": "APNIC"}
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
NONE, MPIC, PEBBLE = "no perspectives", "3 perspectives", "pebble"


@dataclass(frozen=True)
class Target:
    label: str
    directory_url: str
    root_path: Path
    pid: int
    perspective_pids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Result:
    label: str
    certs: int
    seconds: float
    ca_cpu: float
    perspectives_cpu: float
    validation_ms: list[float]

    @property
    def ca_ms(self) -> float:
        return 1000 * self.ca_cpu / self.certs

    @property
    def perspectives_ms(self) -> float:
        return 1000 * self.perspectives_cpu / self.certs


class Driver:
    """One account's ACME session over HTTPS, following the directory (RFC 8555 §7.1.1)."""

    def __init__(self, target: Target, responder: Http01Responder, poll: float) -> None:
        self.target = target
        self.responder = responder
        self.poll = poll
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid: str | None = None
        self.nonce: str | None = None
        self.dir: dict[str, Any] = {}
        self._ssl = ssl.create_default_context(cafile=str(target.root_path))
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self._session.close()

    async def _fresh_nonce(self) -> str:
        async with self._session.head(self.dir["newNonce"], ssl=self._ssl) as resp:
            return resp.headers["Replay-Nonce"]

    async def post(self, url: str, payload: Any) -> tuple[int, dict[str, str], bytes]:
        nonce = self.nonce or await self._fresh_nonce()
        self.nonce = None
        signed = jose.sign(self.key, payload, url=url, nonce=nonce, kid=self.kid)
        headers = {"Content-Type": "application/jose+json"}
        body = json.dumps(signed).encode()
        async with self._session.post(url, data=body, headers=headers, ssl=self._ssl) as resp:
            self.nonce = resp.headers.get("Replay-Nonce")
            return resp.status, dict(resp.headers), await resp.read()

    async def account(self) -> None:
        async with self._session.get(self.target.directory_url, ssl=self._ssl) as resp:
            self.dir = await resp.json()
        status, headers, body = await self.post(
            self.dir["newAccount"], {"termsOfServiceAgreed": True}
        )
        assert status in (200, 201), body
        self.kid = headers["Location"]

    async def until(self, url: str, waiting: str) -> dict[str, Any]:
        while True:
            status, _, body = await self.post(url, None)
            assert status == 200, body
            doc: dict[str, Any] = json.loads(body)
            if doc["status"] != waiting:
                return doc
            await asyncio.sleep(self.poll)

    async def issue(self, name: str) -> float:
        """One certificate for `name`; the validation time in milliseconds."""
        ident = {"type": "dns", "value": name}
        status, headers, body = await self.post(self.dir["newOrder"], {"identifiers": [ident]})
        assert status == 201, body
        order_url, order = headers["Location"], json.loads(body)
        authz_url = order["authorizations"][0]
        _, _, body = await self.post(authz_url, None)
        ch = next(c for c in json.loads(body)["challenges"] if c["type"] == "http-01")
        self.responder.tokens[ch["token"]] = key_authorization(ch["token"], self.key)
        start = time.perf_counter()
        status, _, body = await self.post(ch["url"], {})
        assert status == 200, body
        authz = await self.until(authz_url, "pending")
        validation = (time.perf_counter() - start) * 1000
        assert authz["status"] == "valid", authz
        _, csr = make_csr(name)
        status, _, body = await self.post(order["finalize"], {"csr": jose.b64e(csr)})
        assert status == 200, body
        done = await self.until(order_url, "processing")
        assert done["status"] == "valid", done
        status, _, body = await self.post(done["certificate"], None)
        assert status == 200 and b"BEGIN CERTIFICATE" in body, body
        return validation


@contextmanager
def running_ca(
    label: str, workdir: Path, dns_port: int, http01: int, perspectives: list[dict[str, str]]
) -> Iterator[Target]:
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
        yield Target(label, ca.directory_url, ca.root_path, ca.proc.pid)


async def measure(
    target: Target, responder: Http01Responder, workers: int, certs: int, poll: float, tag: str
) -> Result:
    per_worker = max(1, certs // workers)
    drivers = [Driver(target, responder, poll) for _ in range(workers)]
    times: list[float] = []
    try:
        await asyncio.gather(*(d.account() for d in drivers))

        async def run(index: int, driver: Driver) -> None:
            for n in range(per_worker):
                times.append(await driver.issue(f"{tag}-w{index}-{n}.mpic.bench.test"))

        before_ca = cpu_seconds(target.pid)
        before_p = sum(cpu_seconds(p) for p in target.perspective_pids)
        start = time.perf_counter()
        await asyncio.gather(*(run(i, d) for i, d in enumerate(drivers)))
        seconds = time.perf_counter() - start
        ca_cpu = cpu_seconds(target.pid) - before_ca
        p_cpu = sum(cpu_seconds(p) for p in target.perspective_pids) - before_p
    finally:
        await asyncio.gather(*(d.close() for d in drivers))
    return Result(target.label, per_worker * workers, seconds, ca_cpu, p_cpu, times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def report(result: Result, what: str) -> None:
    times = result.validation_ms
    print(
        f"  {result.label:>16} {what}: {result.certs} certs in {result.seconds:.1f} s; CA CPU "
        f"{result.ca_ms:.1f} ms/cert; perspectives' CPU {result.perspectives_ms:.1f} ms/cert; "
        f"validation median {statistics.median(times):.0f} ms, p95 {percentile(times, 0.95):.0f} ms"
    )


async def main(workers: int, certs: int, rounds: int, latency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-mpic-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        http01 = free_port()
        dns = stack.enter_context(dns_server_process(workdir))
        responder = Http01Responder(port=http01)
        await responder.start()
        try:
            plain_dir, mpic_dir, pebble_dir = workdir / "plain", workdir / "mpic", workdir / "peb"
            for d in (plain_dir, mpic_dir, pebble_dir):
                d.mkdir()
            perspectives = [
                stack.enter_context(
                    running_perspective(
                        mpic_dir, mpic_dir / "ca-state", name, rir, dns_port=dns.dns_port,
                        http01_port=http01,
                    )
                )
                for name, rir in RIRS.items()
            ]  # fmt: skip
            plain = stack.enter_context(running_ca(NONE, plain_dir, dns.dns_port, http01, []))
            entries = [p.settings() for p in perspectives]
            mpic = stack.enter_context(running_ca(MPIC, mpic_dir, dns.dns_port, http01, entries))
            mpic = Target(
                MPIC, mpic.directory_url, mpic.root_path, mpic.pid,
                tuple(p.proc.pid for p in perspectives),
            )  # fmt: skip
            peb = stack.enter_context(
                running_pebble(pebble_dir, dns_port=dns.dns_port, http_port=http01, env=PEBBLE_ENV)
            )
            pebble = Target(PEBBLE, peb.directory_url, peb.root_path, peb.pid)
            targets = [plain, mpic, pebble]
            # Warm-up: each server's first certificates (imports, caches) are not measured.
            for t in targets:
                await measure(t, responder, workers, workers, 0.05, "warm")
            results: dict[str, list[Result]] = {t.label: [] for t in targets}
            for r in range(rounds):
                print(f"round {r + 1}")
                for t in targets[r % 3 :] + targets[: r % 3]:
                    result = await measure(t, responder, workers, certs, 0.05, f"r{r}")
                    results[t.label].append(result)
                    report(result, "loaded")
            together: dict[str, list[Result]] = {t.label: [] for t in targets}
            for r in range(rounds):
                print(f"round {r + 1}, the three at once")
                found = await asyncio.gather(
                    *(measure(t, responder, workers, certs, 0.05, f"t{r}") for t in targets)
                )
                for result in found:
                    together[result.label].append(result)
                    report(result, "at once")
            alone = {
                t.label: await measure(t, responder, 1, latency, 0.005, "alone") for t in targets
            }
        finally:
            await responder.stop()
    print("\nvalidation alone (1 worker, 5 ms polls):")
    for result in alone.values():
        report(result, "alone")
    print("\n== one server at a time")
    summarize(results, alone)
    print("\n== the three at once")
    summarize(together, alone)


def pooled(results: list[Result]) -> float:
    """CPU per certificate over all rounds, in ms."""
    return 1000 * sum(r.ca_cpu for r in results) / sum(r.certs for r in results)


def summarize(results: dict[str, list[Result]], alone: dict[str, Result]) -> None:
    m, n, p = pooled(results[MPIC]), pooled(results[NONE]), pooled(results[PEBBLE])
    p_ms = (
        1000 * sum(r.perspectives_cpu for r in results[MPIC]) / sum(r.certs for r in results[MPIC])
    )
    print(
        f"pooled: CA CPU/cert no perspectives {n:.1f} ms, 3 perspectives {m:.1f} ms "
        f"({100 * (m / n - 1):+.0f}%), Pebble {p:.1f} ms; 3 perspectives / Pebble "
        f"{m / p:.2f}, none / Pebble {n / p:.2f}; perspectives {p_ms:.1f} ms/cert"
    )
    growth = [m.ca_ms / n.ca_ms - 1 for m, n in zip(results[MPIC], results[NONE], strict=True)]
    vs_pebble = [m.ca_ms / p.ca_ms for m, p in zip(results[MPIC], results[PEBBLE], strict=True)]
    none_vs_pebble = [
        n.ca_ms / p.ca_ms for n, p in zip(results[NONE], results[PEBBLE], strict=True)
    ]
    p_ms = [m.perspectives_ms for m in results[MPIC]]
    loaded = [statistics.median(m.validation_ms) for m in results[MPIC]]
    print("\nper round (least flattering last):")
    print("  CA CPU/cert, 3 perspectives vs none: " + ", ".join(f"{100 * g:+.0f}%" for g in growth))
    print("  CA CPU/cert, 3 perspectives / Pebble: " + ", ".join(f"{x:.2f}" for x in vs_pebble))
    print(
        "  CA CPU/cert, no perspectives / Pebble: " + ", ".join(f"{x:.2f}" for x in none_vs_pebble)
    )
    print("  perspectives' CPU/cert (all three): " + ", ".join(f"{x:.1f} ms" for x in p_ms))
    print(
        "  validation median with perspectives, loaded: " + ", ".join(f"{x:.0f} ms" for x in loaded)
    )
    print(
        f"\nleast flattering: CA CPU per certificate with three perspectives "
        f"{100 * max(growth):+.0f}% against none, {max(vs_pebble):.2f}x Pebble's "
        f"(none: {max(none_vs_pebble):.2f}x); perspectives {max(p_ms):.1f} ms/cert; "
        f"validation with perspectives median {max(loaded):.0f} ms loaded, "
        f"{statistics.median(alone[MPIC].validation_ms):.0f} ms alone "
        f"(p95 {percentile(alone[MPIC].validation_ms, 0.95):.0f} ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--certs", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.workers, args.certs, args.rounds, args.latency))

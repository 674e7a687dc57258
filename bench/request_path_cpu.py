"""The CA's instructions per certificate on its request path, in process, and the client's.

The CA runs in this process as `bench/store_per_cert.py` runs it (the ASGI app called
directly, no listener or TLS; SQLite, rate limits off, lint off, CAA on; a real
`acmekit dns` on loopback). The http-01 responder is a process of its own (it answers
any token with the key authorization of the one account), so its CPU is not counted.
The driver behaves as the benchmarks' clients do: it keeps the Replay-Nonce of each
response for its next request (no newNonce per POST), and per certificate sends
newOrder, the authorization, the http-01 challenge, a poll of the authorization,
finalize, a poll of the order and the download: seven requests. Validation and
issuance are awaited with `authority.drain()`, so every run makes the same requests.

    .venv/bin/python bench/request_path_cpu.py [--certs 200]          CPU per certificate
    .venv/bin/python bench/request_path_cpu.py --profile [--certs 200]  cProfile, top 40
    .venv/bin/python bench/request_path_cpu.py --callgrind 30          instructions
    .venv/bin/python bench/request_path_cpu.py --evict 32 [--certs 200]  warm against cold

`--evict MB` asks what the CA's own CPU per certificate (its time handling the requests
and draining validation and issuance; the client's signing left out) becomes when every
request finds the caches as another process would leave them: before each request the
driver writes over MB of memory (a cache line at a time), outside the timed part. The
same certificates are run warm and cold in turn, three times each, so that the
machine's load falls on both alike; the instructions are the same either way.

`--callgrind N` runs this script under `valgrind --tool=callgrind --instr-atstart=no`:
start-up runs uninstrumented, and the script itself switches instrumentation on for the
N measured certificates only (callgrind's client requests, through a tiny C helper built
with the system's gcc and valgrind headers), then once more with `--client-only`: the
same driver against a stand-in app that replays one certificate's recorded responses
(the client's signatures, CSRs, JSON and the driver's own work; the stand-in costs next
to nothing). Instructions / N is a count per certificate the machine's load does not
move; the CA's share is the whole flow's less the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from _common import free_port, fresh_database
from acmekit.protocol import jose
from acmekit.server.config import LintSettings, RateLimits, ServerConfig
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import BASE, RawAcme, Resp, new_key
from acmekit_testkit.acmekit_server import TEST_VALIDATION
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import dns_server_process

REQUESTS_PER_CERT = 7
# callgrind's start and stop of instrumentation, when under it
Toggles = tuple[Callable[[], None], Callable[[], None]] | None


class Driver:
    """One account's client: the Replay-Nonce of each answer signs the next request."""

    def __init__(self, acme: RawAcme, key: jose.PrivateKey) -> None:
        self.acme = acme
        self.key = key
        self.kid: str | None = None
        self.nonce: str | None = None
        self.requests = 0

    async def post(self, url: str, payload: Any) -> Resp:
        nonce = self.nonce or await self.acme.nonce()
        resp = await self.acme.post(url, payload, self.key, self.kid, nonce=nonce)
        self.nonce = resp.header("replay-nonce")
        self.requests += 1
        return resp

    async def register(self) -> None:
        resp = await self.post(f"{BASE}/acme/new-account", {"termsOfServiceAgreed": True})
        assert resp.status == 201, resp.body
        self.kid = resp.header("location")

    async def certificate(self, name: str, drain: Callable[[], Awaitable[None]]) -> None:
        resp = await self.post(
            f"{BASE}/acme/new-order", {"identifiers": [{"type": "dns", "value": name}]}
        )
        assert resp.status == 201, resp.body
        order_url, order = resp.header("location") or "", resp.json()
        authz_url = order["authorizations"][0]
        authz = (await self.post(authz_url, None)).json()
        ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
        assert (await self.post(ch["url"], {})).status == 200
        await drain()
        assert (await self.post(authz_url, None)).json()["status"] == "valid"
        _, csr = make_csr(name)
        done = await self.post(order["finalize"], {"csr": jose.b64e(csr)})
        assert done.status == 200, done.body
        await drain()
        final = (await self.post(order_url, None)).json()
        assert final["status"] == "valid", final
        assert (await self.post(final["certificate"], None)).status == 200


class Replayer:
    """A stand-in for the CA: answers each request with the next recorded response (the
    same answers the driver got from the CA), in a cycle; the client's costs alone."""

    def __init__(self, recorded: list[Resp]) -> None:
        self.recorded = recorded
        self.served = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        resp = self.recorded[self.served % len(self.recorded)]
        self.served += 1
        headers = [(k.encode(), v.encode()) for k, vs in resp.headers.items() for v in vs]
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": resp.body})


class Recording(RawAcme):
    """The driver's transport, keeping what the CA answered; with `evict` set, it writes
    over that buffer before each request, and `ca_time` adds up the thread's CPU in the
    CA (the requests, and the drains the driver times through `timed`)."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.kept: list[Resp] | None = None
        self.evict: bytearray | None = None
        self.ca_time = 0.0

    async def request(
        self, method: str, url: str, body: bytes = b"", content_type: str | None = None
    ) -> Resp:
        if self.evict is not None:
            touch(self.evict)
        start = time.thread_time()
        resp = await super().request(method, url, body, content_type)
        self.ca_time += time.thread_time() - start
        if self.kept is not None:
            self.kept.append(resp)
        return resp

    def timed(self, drain: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if self.evict is not None:
                touch(self.evict)
            start = time.thread_time()
            await drain()
            self.ca_time += time.thread_time() - start

        return run


LINE = 64  # bytes in a cache line


def touch(buf: bytearray) -> None:
    """Write one byte in every cache line of `buf`: what was cached before is gone from
    every level `buf` is larger than, as after another process ran on this core."""
    buf[::LINE] = bytes([buf[0] ^ 1]) * len(range(0, len(buf), LINE))


RESPONDER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
thumb = sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (self.path.rsplit("/", 1)[-1] + "." + thumb).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@contextmanager
def responder(thumb: str) -> Iterator[int]:
    """The http-01 responder as its own process (not valgrind's: it does not follow)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", RESPONDER, str(port), thumb])
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait()


async def flow(
    certs: int, client_only: bool, profile: cProfile.Profile | None, marks: Toggles
) -> float:
    """CPU seconds per certificate of `certs` certificates after a warm one."""
    key = new_key()
    with tempfile.TemporaryDirectory(prefix="acmekit-path-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "dns").mkdir()
        with (
            responder(jose.thumbprint(key)) as http_port,
            dns_server_process(tmp / "dns") as dns,
            fresh_database("sqlite", tmp, "ca.db") as url,
        ):
            assembly = assemble(_config(tmp, url, dns.dns_port, http_port))
            gc.collect()
            gc.freeze()  # as `acmekit server` does after start-up
            try:
                return await _measure(assembly.app, key, certs, client_only, profile, marks)
            finally:
                await assembly.app.close()
                assembly.store.engine.dispose()


def _config(tmp: Path, url: str, dns_port: int, http_port: int) -> ServerConfig:
    return ServerConfig(
        state_dir=tmp / "ca",
        db=url,
        dns_resolver=f"127.0.0.1:{dns_port}",
        http01_port=http_port,
        validation_timeout=5.0,
        validation=TEST_VALIDATION,
        rate_limits=RateLimits(enabled=False),
        lint=LintSettings(enabled=False),
    )


async def _measure(
    app: Any,
    key: jose.PrivateKey,
    certs: int,
    client_only: bool,
    profile: cProfile.Profile | None,
    marks: Toggles,
) -> float:
    acme = Recording(app)
    driver = Driver(acme, key)
    await driver.register()
    await driver.certificate("warm.example.test", app.authority.drain)
    drain = app.authority.drain
    if client_only:
        acme.kept = []
        await driver.certificate("kept.example.test", drain)
        acme.app = Replayer(acme.kept)  # type: ignore[assignment]
        acme.kept = None

        async def drain() -> None:
            return None

    start = time.process_time()
    if profile is not None:
        profile.enable()
    if marks is not None:
        marks[0]()
    for i in range(certs):
        await driver.certificate(f"c{i}.example.test", drain)
    if marks is not None:
        marks[1]()
    if profile is not None:
        profile.disable()
    return (time.process_time() - start) / certs


async def warm_and_cold(certs: int, evict_mb: int) -> None:
    """The CA's CPU per certificate with warm caches and with each request's caches
    written over (`--evict`), in turn, three times each, on one CA."""
    key = new_key()
    with tempfile.TemporaryDirectory(prefix="acmekit-path-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "dns").mkdir()
        with (
            responder(jose.thumbprint(key)) as http_port,
            dns_server_process(tmp / "dns") as dns,
            fresh_database("sqlite", tmp, "ca.db") as url,
        ):
            assembly = assemble(_config(tmp, url, dns.dns_port, http_port))
            gc.collect()
            gc.freeze()
            app = assembly.app
            acme = Recording(app)
            driver = Driver(acme, key)
            await driver.register()
            drain = acme.timed(app.authority.drain)
            await driver.certificate("warm.example.test", drain)
            buf = bytearray(evict_mb << 20)
            results: dict[str, list[float]] = {"warm": [], "cold": []}
            try:
                for n in range(6):
                    label = "cold" if n % 2 else "warm"
                    acme.evict, acme.ca_time = (buf if label == "cold" else None), 0.0
                    for i in range(certs):
                        await driver.certificate(f"{label}{n}-{i}.example.test", drain)
                    results[label].append(1e3 * acme.ca_time / certs)
            finally:
                await app.close()
                assembly.store.engine.dispose()
    warm, cold = sorted(results["warm"]), sorted(results["cold"])
    print(
        f"CA CPU per certificate ({certs} per run, ms): warm {warm[1]:.2f} "
        f"(runs {', '.join(f'{x:.2f}' for x in results['warm'])}); "
        f"caches written over ({evict_mb} MB) before each request {cold[1]:.2f} "
        f"(runs {', '.join(f'{x:.2f}' for x in results['cold'])}); "
        f"x{cold[1] / warm[1]:.2f}; load average {os.getloadavg()[0]:.2f}"
    )


def run(certs: int, client_only: bool, profile: cProfile.Profile | None, marks: Toggles) -> float:
    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop  # as `acmekit server` runs
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(flow(certs, client_only, profile, marks))


TOGGLES = r"""
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("measured"); }
"""


def toggles() -> tuple[Callable[[], None], Callable[[], None]]:
    """Callgrind's start and stop of instrumentation (no-ops outside valgrind)."""
    import ctypes

    tmp = Path(tempfile.mkdtemp(prefix="acmekit-cg-toggles-"))
    (tmp / "t.c").write_text(TOGGLES)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", tmp / "t.so", tmp / "t.c"], check=True)
    lib = ctypes.CDLL(str(tmp / "t.so"))
    return lib.start, lib.stop


def callgrind(certs: int, client_only: bool, tmp: Path) -> float:
    """Instructions per certificate, counted over the measured certificates only."""
    out = tmp / f"callgrind.{int(client_only)}.out"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    argv += [f"--callgrind-out-file={out}", sys.executable, __file__, "--certs", str(certs)]
    argv += ["--client-only", "--toggles"] if client_only else ["--toggles"]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total = 0
    for part in tmp.glob(f"callgrind.{int(client_only)}.out*"):
        text = part.read_text()
        if "measured" in text.split("\nevents:", 1)[0]:
            found = re.findall(r"^totals: (\d+)", text, re.M)  # the header's summary is 0
            assert found, part
            total += int(found[-1])
    return total / certs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--client-only", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile, top 40 by own time")
    parser.add_argument("--callgrind", type=int, help="N: instructions per certificate")
    parser.add_argument("--toggles", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--evict", type=int, metavar="MB", help="the CA warm, and with MB written over"
    )
    args = parser.parse_args()
    if args.evict:
        loop = None
        with suppress(ImportError):
            import uvloop

            loop = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=loop) as runner:
            runner.run(warm_and_cold(args.certs, args.evict))
        return
    if args.callgrind:
        with tempfile.TemporaryDirectory(prefix="acmekit-path-callgrind-") as tmp:
            whole = callgrind(args.callgrind, False, Path(tmp))
            client = callgrind(args.callgrind, True, Path(tmp))
        print(
            json.dumps(
                {
                    "certs": args.callgrind,
                    "whole_per_cert": round(whole),
                    "client_per_cert": round(client),
                    "ca_per_cert": round(whole - client),
                    "ca_per_request": round((whole - client) / REQUESTS_PER_CERT),
                }
            )
        )
        return
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    cpu = run(args.certs, args.client_only, profile, toggles() if args.toggles else None)
    what = "client alone" if args.client_only else "CA and client"
    print(f"{args.certs} certificates, {what}: {1e3 * cpu:.3f} ms CPU each (pid {os.getpid()})")
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    main()

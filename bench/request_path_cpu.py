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
    .venv/bin/python bench/request_path_cpu.py --limits --callgrind 30 rate limits on (raised)
    .venv/bin/python bench/request_path_cpu.py --renewals --callgrind 30  renewals

`--renewals` (in process) makes each measured certificate a renewal: a second order for a name whose
authorization is valid (its first certificate issued before the measured part), so the
order is ready at once; then the authorization's POST-as-GET, finalize, the order's poll
and the download: five requests.

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

`--listener` serves the same CA as `acmekit server` does, through its own listener
(`Http1Server` with TLS on loopback, under uvloop), to the same driver run in a process
of its own (aiohttp, one kept-alive connection; it polls until the authorization and
the order are settled, and says how many requests it made). Everything this process
runs is then the CA's: the TLS records (the system's libssl and libcrypto), uvloop,
httptools, `http1` and the ASGI exchange, and the app. With `--callgrind N` the driver
marks its measured window, and `--top K` splits the count by shared object and by
function (each function's own instructions); `--keep DIR` keeps the dumps for
`callgrind_annotate --tree=caller`, which names who calls what.

    .venv/bin/python bench/request_path_cpu.py --listener --callgrind 10 --top 40

`--by-request` (with `--callgrind N`, in process) splits the CA's count by kind of
request: newOrder, the authorization's POST-as-GET, the challenge, the authorization's
poll, finalize, the order's poll and the download. Callgrind's counts are zeroed before
each request and dumped after it under its kind (the client's signing and the drains
between requests fall in no dump), and the same run against the stand-in app is
subtracted kind by kind. The challenge's count holds the validation it waits for and
finalize's the issuance. `--top K` adds each kind's K costliest functions (own counts).

    .venv/bin/python bench/request_path_cpu.py --callgrind 10 --by-request [--top 30]

`--cache-sim` (with `--callgrind N`, in process) asks how many distinct cache lines the
CA touches per certificate, its working set: valgrind simulates the caches (sizes in
CACHES: I1 32 KB and D1 48 KB as this machine's cores have them, a last level of 32 MB
that holds the whole working set) and, before each request and each drain, the
simulation starts empty (switching instrumentation off and on clears callgrind's
caches), as after another process ran (`--evict`). Last-level misses are then the lines
the request brings in from memory, instruction and data apart. Each window is dumped
under its kind (KINDS, and "drain"); the same run against the stand-in app says what
the driver's transport adds to each window (misses do not subtract, so it is shown, not
subtracted; the toggles' own ctypes and libffi are in both). QUICKENED certificates
warm the CA first, so that no window holds CPython's one-time rewriting of a function.
`--top K` names the shared objects and functions (own counts) with the most last-level
misses, instruction and data apart. Run it with PYTHONHASHSEED=0.

    PYTHONHASHSEED=0 .venv/bin/python bench/request_path_cpu.py --callgrind 10 --cache-sim --top 25

`--log` (with any of the above) has the CA log as `acmekit server` does, at INFO in the
CLI's format, to /dev/null: two lines a certificate. Without it the CA makes no log
records at all, and their cost is in none of the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import pstats
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from _common import free_port, fresh_database, raised_rate_limits
from acmekit.cli.main import configure_logging, log_progress_by_default
from acmekit.http1 import Http1Server
from acmekit.protocol import jose
from acmekit.server.ca import listener_credentials
from acmekit.server.config import LintSettings, RateLimits, ServerConfig
from acmekit.server.run import SYSTEM_CLOCK, assemble, settle_process
from acmekit_testkit.acme_raw import HttpRawAcme, RawAcme, Resp, new_key
from acmekit_testkit.acmekit_server import TEST_VALIDATION
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import dns_server_process

REQUESTS_PER_CERT = 7
REQUESTS_PER_RENEWAL = 5  # `--renewals`: no challenge, no authorization's poll
QUICKENED = 8  # calls after which CPython 3.11 specializes a function's code
# callgrind's start and stop of instrumentation, when under it
Toggles = tuple[Callable[[], None], Callable[[], None]] | None
# callgrind's zero of the counts, and its dump under a name (`--by-request`)
Split = tuple[Callable[[], None], Callable[[bytes], None]]


# The kinds of request of a certificate, in the order the driver sends them
# (`--by-request` splits the CA's instructions by these).
KINDS = ("new-order", "authz", "challenge", "authz-poll", "finalize", "order-poll", "certificate")


class Driver:
    """One account's client: the Replay-Nonce of each answer signs the next request.
    `acme.kind` names the kind of request under way (KINDS) while it is sent."""

    def __init__(self, acme: RawAcme, key: jose.PrivateKey) -> None:
        self.acme = acme
        self.key = key
        self.kid: str | None = None
        self.nonce: str | None = None
        self.requests = 0

    async def post(self, url: str, payload: Any, kind: str = "") -> Resp:
        nonce = self.nonce or await self.acme.nonce()
        if isinstance(self.acme, Recording):
            self.acme.kind = kind
        resp = await self.acme.post(url, payload, self.key, self.kid, nonce=nonce)
        self.nonce = resp.header("replay-nonce")
        self.requests += 1
        return resp

    async def register(self) -> None:
        resp = await self.post(f"{self.acme.base}/acme/new-account", {"termsOfServiceAgreed": True})
        assert resp.status == 201, resp.body
        self.kid = resp.header("location")

    async def certificate(self, name: str, settle: Callable[[], Awaitable[None]]) -> None:
        resp = await self.post(
            f"{self.acme.base}/acme/new-order",
            {"identifiers": [{"type": "dns", "value": name}]},
            "new-order",
        )
        assert resp.status == 201, resp.body
        order_url, order = resp.header("location") or "", resp.json()
        authz_url = order["authorizations"][0]
        authz = (await self.post(authz_url, None, "authz")).json()
        ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
        assert (await self.post(ch["url"], {}, "challenge")).status == 200
        assert (await self.settled(authz_url, settle, "authz-poll"))["status"] == "valid"
        _, csr = make_csr(name)
        done = await self.post(order["finalize"], {"csr": jose.b64e(csr)}, "finalize")
        assert done.status == 200, done.body
        final = await self.settled(order_url, settle, "order-poll")
        assert final["status"] == "valid", final
        assert (await self.post(final["certificate"], None, "certificate")).status == 200

    async def renewal(self, name: str, settle: Callable[[], Awaitable[None]]) -> None:
        """A second order for `name`, its authorization reused (`--renewals`)."""
        resp = await self.post(
            f"{self.acme.base}/acme/new-order",
            {"identifiers": [{"type": "dns", "value": name}]},
            "new-order",
        )
        assert resp.status == 201 and resp.json()["status"] == "ready", resp.body
        order_url, order = resp.header("location") or "", resp.json()
        authz = (await self.post(order["authorizations"][0], None, "authz")).json()
        assert authz["status"] == "valid", authz
        _, csr = make_csr(name)
        done = await self.post(order["finalize"], {"csr": jose.b64e(csr)}, "finalize")
        assert done.status == 200, done.body
        final = await self.settled(order_url, settle, "order-poll")
        assert final["status"] == "valid", final
        assert (await self.post(final["certificate"], None, "certificate")).status == 200

    async def settled(self, url: str, settle: Callable[[], Awaitable[None]], kind: str) -> Any:
        """Poll `url` after each `settle` until it is no longer pending or processing (in
        process `settle` drains the authority, so the first poll finds it settled)."""
        while True:
            await settle()
            doc = (await self.post(url, None, kind)).json()
            if doc["status"] not in ("pending", "processing"):
                return doc


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
        self.kind = ""  # the driver's kind of request under way
        self.split: Split | None = None  # callgrind's zero and dump, per request

    async def request(
        self, method: str, url: str, body: bytes = b"", content_type: str | None = None
    ) -> Resp:
        if self.evict is not None:
            touch(self.evict)
        split = self.split if self.kind else None  # newNonce's HEAD: none of a kind
        if split is not None:
            split[0]()
        start = time.thread_time()
        resp = await super().request(method, url, body, content_type)
        self.ca_time += time.thread_time() - start
        if split is not None:
            split[1](f"request-{self.kind}".encode())
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

    def windowed(self, drain: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """`drain` in a window of its own, as each request is (`--cache-sim`)."""

        async def run() -> None:
            if self.split is None:
                return await drain()
            self.split[0]()
            await drain()
            self.split[1](b"request-drain")

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


# Set (by `--limits`) in this process's environment, which the runs it starts inherit.
LIMITS_ON = "ACMEKIT_BENCH_LIMITS"
RENEWALS = "ACMEKIT_BENCH_RENEWALS"  # `--renewals`, to the runs under valgrind too


@asynccontextmanager
async def running_ca(key: jose.PrivateKey, base_url: str | None = None) -> AsyncIterator[Any]:
    """The CA's assembly (SQLite, lint and rate limits off, CAA on, a real `acmekit
    dns`, the http-01 responder in a process of its own), frozen as `acmekit server`
    freezes it after start-up. With `--limits` the limits are on, none refusing."""
    with tempfile.TemporaryDirectory(prefix="acmekit-path-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "dns").mkdir()
        with (
            responder(jose.thumbprint(key)) as http_port,
            dns_server_process(tmp / "dns") as dns,
            fresh_database("sqlite", tmp, "ca.db") as url,
        ):
            config = ServerConfig(
                state_dir=tmp / "ca",
                db=url,
                base_url=base_url,
                dns_resolver=f"127.0.0.1:{dns.dns_port}",
                http01_port=http_port,
                validation_timeout=5.0,
                validation=TEST_VALIDATION,
                rate_limits=raised_rate_limits() if LIMITS_ON in os.environ else RateLimits(False),
                lint=LintSettings(enabled=False),
            )
            assembly = assemble(config)
            settle_process()  # as `acmekit server` does after start-up
            try:
                yield assembly
            finally:
                await assembly.app.close()
                assembly.store.engine.dispose()


async def flow(
    certs: int,
    client_only: bool,
    profile: cProfile.Profile | None,
    marks: Toggles,
    split: Split | None = None,
    drains: bool = False,
) -> float:
    """CPU seconds per certificate of `certs` certificates after a warm one (`drains`:
    after QUICKENED, each drain in a window of `split` of its own, as each request is)."""
    key = new_key()
    async with running_ca(key) as assembly:
        app = assembly.app
        return await _measure(app, key, certs, client_only, profile, marks, split, drains)


async def _measure(
    app: Any,
    key: jose.PrivateKey,
    certs: int,
    client_only: bool,
    profile: cProfile.Profile | None,
    marks: Toggles,
    split: Split | None = None,
    drains: bool = False,
) -> float:
    acme = Recording(app)
    driver = Driver(acme, key)
    await driver.register()
    # With windows of their own (`--cache-sim`), more: CPython rewrites a function's code
    # in place (quickens it) on its eighth call, which code run once a certificate would
    # otherwise do inside the measured windows.
    renewals = RENEWALS in os.environ
    step = driver.renewal if renewals else driver.certificate
    for n in range(QUICKENED if drains else 1):
        await driver.certificate(f"warm{n or ''}.example.test", app.authority.drain)
        if renewals:
            await driver.renewal(f"warm{n or ''}.example.test", app.authority.drain)
    drain = app.authority.drain
    if renewals:  # the certificates renewed, issued before the measured part
        for name in ["kept", *(f"c{i}" for i in range(certs))]:
            await driver.certificate(f"{name}.example.test", drain)
    if client_only:
        acme.kept = []
        await step("kept.example.test", drain)
        acme.app = Replayer(acme.kept)  # type: ignore[assignment]
        acme.kept = None

        async def drain() -> None:
            return None

    if drains:
        drain = acme.windowed(drain)
    start = time.process_time()
    if profile is not None:
        profile.enable()
    if marks is not None:
        marks[0]()
    acme.split = split
    for i in range(certs):
        await step(f"c{i}.example.test", drain)
    if marks is not None:
        marks[1]()
    if profile is not None:
        profile.disable()
    return (time.process_time() - start) / certs


async def warm_and_cold(certs: int, evict_mb: int) -> None:
    """The CA's CPU per certificate with warm caches and with each request's caches
    written over (`--evict`), in turn, three times each, on one CA."""
    key = new_key()
    async with running_ca(key) as assembly:
        app = assembly.app
        acme = Recording(app)
        driver = Driver(acme, key)
        await driver.register()
        drain = acme.timed(app.authority.drain)
        await driver.certificate("warm.example.test", drain)
        buf = bytearray(evict_mb << 20)
        results: dict[str, list[float]] = {"warm": [], "cold": []}
        for n in range(6):
            label = "cold" if n % 2 else "warm"
            acme.evict, acme.ca_time = (buf if label == "cold" else None), 0.0
            for i in range(certs):
                await driver.certificate(f"{label}{n}-{i}.example.test", drain)
            results[label].append(1e3 * acme.ca_time / certs)
    warm, cold = sorted(results["warm"]), sorted(results["cold"])
    print(
        f"CA CPU per certificate ({certs} per run, ms): warm {warm[1]:.2f} "
        f"(runs {', '.join(f'{x:.2f}' for x in results['warm'])}); "
        f"caches written over ({evict_mb} MB) before each request {cold[1]:.2f} "
        f"(runs {', '.join(f'{x:.2f}' for x in results['cold'])}); "
        f"x{cold[1] / warm[1]:.2f}; load average {os.getloadavg()[0]:.2f}"
    )


def io_calls() -> int:
    """This process's read- and write-family system calls so far (syscr + syscw of
    /proc/self/io, every thread): the kernel's part, as a count."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["syscr"]) + int(fields["syscw"])


async def listener_flow(certs: int, marks: Toggles, settle: float) -> tuple[float, int, int]:
    """The same certificates through the CA's listener (`Http1Server` over TLS on
    loopback, as `acmekit server` serves) from a driver in a process of its own: CPU
    seconds per certificate in this process, and the driver's requests, in the window the
    driver marks (after its account and a warm certificate). The app's lifespan is not
    started: its housekeeping is no part of a request, and the in-process flow has none."""
    key = new_key()
    sock = socket.create_server(("127.0.0.1", 0))
    base = f"https://127.0.0.1:{sock.getsockname()[1]}"
    async with running_ca(key, base) as assembly:
        state = assembly.app.config.state_dir
        chain, tls_key = listener_credentials(
            assembly.issuer, state, ["127.0.0.1"], SYSTEM_CLOCK.now()
        )
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(chain, tls_key)
        tls.set_alpn_protocols(["http/1.1"])
        server = Http1Server(assembly.app, assembly.app.config.limits, tls)
        await server.start(sock)
        key_file = state / "driver.key"
        key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        argv = [__file__, "--drive", base, str(state / "root.pem"), str(key_file)]
        driver = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            *("--certs", str(certs), "--settle", str(settle)),
            stdout=asyncio.subprocess.PIPE,
        )
        assert driver.stdout is not None
        try:
            assert await driver.stdout.readline() == b"start\n"
            start, calls = time.process_time(), io_calls()
            if marks is not None:
                marks[0]()
            stop = await driver.stdout.readline()
            if marks is not None:
                marks[1]()
            used, calls = time.process_time() - start, io_calls() - calls
            assert stop.startswith(b"stop "), stop
            assert await driver.wait() == 0
        finally:
            if driver.returncode is None:
                driver.kill()
                await driver.wait()
            await server.shutdown(5.0)
        return used / certs, int(stop.split()[1]), calls


async def drive(base: str, root: str, key: jose.PrivateKey, certs: int, wait: float) -> None:
    """The listener variant's driver, in its own process: an account and a warm
    certificate, then `start`, the measured certificates, and `stop REQUESTS`."""
    acme = HttpRawAcme(base, root)
    driver = Driver(acme, key)

    async def settle() -> None:
        await asyncio.sleep(wait)

    try:
        await driver.register()
        await driver.certificate("warm.example.test", settle)
        print("start", flush=True)
        before = driver.requests
        for i in range(certs):
            await driver.certificate(f"c{i}.example.test", settle)
        print(f"stop {driver.requests - before}", flush=True)
    finally:
        await acme.close()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # as `acmekit server` runs


def run(
    certs: int,
    client_only: bool,
    profile: cProfile.Profile | None,
    marks: Toggles,
    split: Split | None = None,
    drains: bool = False,
) -> float:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(flow(certs, client_only, profile, marks, split, drains))


TOGGLES = r"""
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("measured"); }
void zero(void) { CALLGRIND_ZERO_STATS; }
void dump(const char *what) { CALLGRIND_DUMP_STATS_AT(what); }
void cold(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_START_INSTRUMENTATION; }
void dump_stop(const char *what) {
    CALLGRIND_DUMP_STATS_AT(what); CALLGRIND_STOP_INSTRUMENTATION;
}
"""


def toggles() -> tuple[Callable[[], None], Callable[[], None], Split, Split]:
    """Callgrind's start and stop of instrumentation, its zero and named dump, and its
    cold start (instrumentation switched on afresh: counts zeroed, simulated caches
    emptied) and named dump that switches instrumentation off (no-ops outside valgrind)."""
    import ctypes

    tmp = Path(tempfile.mkdtemp(prefix="acmekit-cg-toggles-"))
    (tmp / "t.c").write_text(TOGGLES)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", tmp / "t.so", tmp / "t.c"], check=True)
    lib = ctypes.CDLL(str(tmp / "t.so"))
    lib.dump.argtypes = [ctypes.c_char_p]
    lib.dump_stop.argtypes = [ctypes.c_char_p]
    return lib.start, lib.stop, (lib.zero, lib.dump), (lib.cold, lib.dump_stop)


def callgrind(
    certs: int,
    variant: list[str],
    tmp: Path,
    keep: Path | None = None,
    trigger: str = "measured",
    options: tuple[str, ...] = (),
) -> tuple[list[str], str]:
    """The measured window's dump(s) of one run under callgrind (with `options`), those
    whose trigger names `trigger` (copied into `keep`, for callgrind_annotate)."""
    out = tmp / f"callgrind.{'-'.join(variant) or 'whole'}.out"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", *options]
    argv += [f"--callgrind-out-file={out}", sys.executable, __file__, "--certs", str(certs)]
    said = subprocess.run(
        [*argv, *variant, "--toggles"],
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ).stdout
    dumps = [part.read_text() for part in tmp.glob(f"{out.name}*")]
    measured = [text for text in dumps if trigger in text.split("\nevents:", 1)[0]]
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for n, text in enumerate(measured):
            (keep / f"{out.name}.{n}").write_text(text)
    return measured, said


def instructions(dumps: list[str]) -> int:
    total = 0
    for text in dumps:
        found = re.findall(r"^totals: (\d+)", text, re.M)  # the header's summary is 0
        assert found
        total += int(found[-1])
    return total


def self_cost(dumps: list[str], events: tuple[str, ...] = ("Ir",)) -> Counter[tuple[str, str]]:
    """Instructions (or the sum of `events`) by (shared object, function), each
    function's own (not its callees')."""
    cost: Counter[tuple[str, str]] = Counter()
    names: dict[str, str] = {}
    for text in dumps:
        header = re.search(r"^events: (.*)$", text, re.M)
        assert header
        columns = [1 + header[1].split().index(event) for event in events]
        ob = fn = "?"
        after_call = False
        for line in text.splitlines():
            head = line[:1]
            if head.isdigit() or head in "+-*":
                fields = line.split()
                if after_call:  # a call's inclusive cost, not the caller's own
                    after_call = False
                else:  # a position alone costs nothing, and trailing zeros are left out
                    cost[ob, fn] += sum(int(fields[c]) for c in columns if c < len(fields))
            elif line.startswith(("ob=", "fn=")):
                ref, _, name = line[3:].partition(" ")
                if name:
                    names[line[:3] + ref] = name
                value = names.get(line[:3] + ref, ref) if ref.startswith("(") else line[3:]
                if line.startswith("ob="):
                    ob = value
                else:
                    fn = value
            elif line.startswith("calls="):
                after_call = True
            elif line.startswith(("cob=", "cfn=")):
                ref, _, name = line[4:].partition(" ")
                if name:
                    names[line[1:4] + ref] = name
    return cost


def by_object(cost: Counter[tuple[str, str]]) -> Counter[str]:
    objects: Counter[str] = Counter()
    for (ob, _), n in cost.items():
        objects[Path(ob).name] += n
    return objects


def report_callgrind(
    certs: int, listener: bool, top: int, keep: Path | None, log: bool = False
) -> None:
    logs = ["--log"] if log else []
    with tempfile.TemporaryDirectory(prefix="acmekit-path-callgrind-") as tmp:
        per = REQUESTS_PER_RENEWAL if RENEWALS in os.environ else REQUESTS_PER_CERT
        requests = per * certs
        if listener:
            # polls far enough apart that, under valgrind too, one finds each settled
            ca, said = callgrind(certs, ["--listener", "--settle", "0.5", *logs], Path(tmp), keep)
            client: list[str] = []
            found = re.search(r"(\d+) requests", said)
            assert found, said
            requests = int(found[1])
        else:
            ca = callgrind(certs, logs, Path(tmp), keep)[0]
            client = callgrind(certs, ["--client-only", *logs], Path(tmp), keep)[0]
    whole, theirs = instructions(ca), instructions(client)
    print(
        json.dumps(
            {
                "certs": certs,
                "requests": requests,
                "variant": "listener" if listener else "in process",
                "whole_per_cert": round(whole / certs),
                "client_per_cert": round(theirs / certs),
                "ca_per_cert": round((whole - theirs) / certs),
                "ca_per_request": round((whole - theirs) / requests),
            }
        )
    )
    if top:
        mine, other = self_cost(ca), self_cost(client)
        mine.subtract(other)
        print("\nper request, by shared object (the client's subtracted in process):")
        for name, n in by_object(mine).most_common(top):
            print(f"{n / requests:12,.0f}  {name}")
        print("\nper request, by function:")
        for (ob, fn), n in mine.most_common(top):
            print(f"{n / requests:12,.0f}  {Path(ob).name}  {fn}")


def report_by_request(certs: int, top: int, keep: Path | None) -> None:
    """The CA's instructions per request of each kind (KINDS), in process: callgrind's
    counts zeroed before each request and dumped after it under the request's kind, so
    that a dump holds the app's handling of that request alone (the client's signing
    and the drains between requests are in none); the same run with `--client-only`
    (the stand-in app) is subtracted kind by kind. The challenge's and finalize's hold
    the validation and the issuance they wait for."""
    with tempfile.TemporaryDirectory(prefix="acmekit-path-callgrind-") as tmp:
        ca = callgrind(certs, ["--split"], Path(tmp), keep, "request-")[0]
        client = callgrind(certs, ["--client-only", "--split"], Path(tmp), keep, "request-")[0]
    mine, theirs = _by_kind(ca), _by_kind(client)
    rows = {}
    for kind in KINDS:
        dumps, other = mine.get(kind, []), theirs.get(kind, [])
        n = max(len(dumps), 1)
        rows[kind] = {
            "requests": len(dumps),
            "ca_per_request": round(
                instructions(dumps) / n - instructions(other) / max(len(other), 1)
            ),
        }
    print(json.dumps({"certs": certs, "variant": "in process, by request", "kinds": rows}))
    for kind in KINDS if top else ():
        cost = self_cost(mine.get(kind, []))
        cost.subtract(self_cost(theirs.get(kind, [])))
        n = max(len(mine.get(kind, [])), 1)
        print(f"\n{kind}: per request, by function")
        for (ob, fn), count in cost.most_common(top):
            print(f"{count / n:12,.0f}  {Path(ob).name}  {fn}")


# The simulated caches of `--cache-sim` (size, ways, line): the first level as this
# machine's cores have it (lscpu: 32 KB instruction, 48 KB data), a last level large
# enough to hold a request's whole working set, so that from empty caches its misses
# count the distinct lines the request touches.
CACHES = ("--I1=32768,8,64", "--D1=49152,12,64", "--LL=33554432,16,64")
MISSES = ("I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


def totals(dumps: list[str]) -> Counter[str]:
    """Each event's total over `dumps` (the last `totals:` line of each)."""
    total: Counter[str] = Counter()
    for text in dumps:
        header = re.search(r"^events: (.*)$", text, re.M)
        found = re.findall(r"^totals: (.*)$", text, re.M)
        assert header and found
        total.update(dict(zip(header[1].split(), map(int, found[-1].split()), strict=False)))
    return total


def report_cache_sim(certs: int, top: int, keep: Path | None) -> None:
    """The CA's working set per certificate (`--cache-sim`): each request and each drain
    in a window of its own that starts with empty simulated caches, so that its
    last-level misses are the distinct lines it touches; the stand-in app's run says
    what the driver's transport takes of the same windows."""
    options = ("--cache-sim=yes", *CACHES)
    with tempfile.TemporaryDirectory(prefix="acmekit-path-callgrind-") as tmp:
        ca = callgrind(certs, ["--cold"], Path(tmp), keep, "request-", options)[0]
        client = callgrind(certs, ["--client-only", "--cold"], Path(tmp), keep, "request-", options)
    rows = {}
    for name, dumps in (("ca", ca), ("stand_in", client[0])):
        total = totals(dumps)
        row: dict[str, float] = {event: round(total[event] / certs) for event in ("Ir", *MISSES)}
        row["windows"] = len(dumps) / certs
        row["LL_kb"] = round((total["ILmr"] + total["DLmr"] + total["DLmw"]) * 64 / 1024 / certs)
        rows[name] = row
    by_kind = {}
    for kind, dumps in _by_kind(ca).items():
        total, n = totals(dumps), len(dumps)
        by_kind[kind] = {
            "windows": n,
            "Ir": round(total["Ir"] / n),
            "ILmr": round(total["ILmr"] / n),
            "DLm": round((total["DLmr"] + total["DLmw"]) / n),
        }
    caches = " ".join(option.removeprefix("--") for option in CACHES)
    print(json.dumps({"certs": certs, "caches": caches, "per_cert": rows, "by_kind": by_kind}))
    for title, events in (("instruction", ("ILmr",)), ("data", ("DLmr", "DLmw"))):
        if not top:
            break
        cost = self_cost(ca, events)
        print(f"\nlast-level {title} misses per certificate, by shared object:")
        for name, n in by_object(cost).most_common(top):
            print(f"{n / certs:10,.0f}  {name}")
        print(f"\nlast-level {title} misses per certificate, by function (own):")
        for (ob, fn), n in cost.most_common(top):
            print(f"{n / certs:10,.0f}  {Path(ob).name}  {fn}")


def _by_kind(dumps: list[str]) -> dict[str, list[str]]:
    """Dumps by the kind of request their trigger names (`request-KIND`)."""
    found: dict[str, list[str]] = {}
    for text in dumps:
        named = re.search(r"request-([a-z-]+)", text.split("\nevents:", 1)[0])
        assert named, text[:300]
        found.setdefault(named[1], []).append(text)
    return found


def log_as_server() -> None:
    """The log lines `acmekit server` writes (the CLI's format, INFO for the CA's own
    loggers), to /dev/null: without `--log` the CA makes no log records at all."""
    configure_logging(
        logging.WARNING,
        open(os.devnull, "w"),  # noqa: SIM115 - for the process's lifetime
    )
    log_progress_by_default()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--client-only", action="store_true")
    parser.add_argument("--listener", action="store_true", help="through Http1Server and TLS")
    parser.add_argument("--profile", action="store_true", help="cProfile, top 40 by own time")
    parser.add_argument("--callgrind", type=int, help="N: instructions per certificate")
    parser.add_argument("--top", type=int, default=0, help="with --callgrind: the split")
    parser.add_argument("--keep", type=Path, help="with --callgrind: keep the dumps here")
    parser.add_argument(
        "--log", action="store_true", help="log as `acmekit server` does (INFO), to /dev/null"
    )
    parser.add_argument(
        "--by-request", action="store_true", help="with --callgrind: each kind of request's own"
    )
    parser.add_argument(
        "--limits", action="store_true", help="rate limits on, raised never to refuse the load"
    )
    parser.add_argument(
        "--renewals", action="store_true", help="each a second order for an authorized name"
    )
    parser.add_argument("--toggles", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--split", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cache-sim", action="store_true", help="with --callgrind: the working set per cert"
    )
    parser.add_argument("--drive", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--evict", type=int, metavar="MB", help="the CA warm, and with MB written over"
    )
    parser.add_argument(
        "--settle", type=float, default=0.05, help="--listener: seconds between polls"
    )
    args = parser.parse_args()
    if args.limits:  # in the environment: the runs under valgrind are processes of their own
        os.environ[LIMITS_ON] = "1"
    if args.renewals:
        os.environ[RENEWALS] = "1"
    if args.log:
        log_as_server()
    if args.drive:
        base, root, key_file = args.drive
        key = load_pem_private_key(Path(key_file).read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        asyncio.run(drive(base, root, key, args.certs, args.settle))
        return
    if args.evict:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(warm_and_cold(args.certs, args.evict))
        return
    if args.callgrind and args.cache_sim:
        report_cache_sim(args.callgrind, args.top, args.keep)
        return
    if args.callgrind and args.by_request:
        report_by_request(args.callgrind, args.top, args.keep)
        return
    if args.callgrind:
        report_callgrind(args.callgrind, args.listener, args.top, args.keep, args.log)
        return
    marks, split = None, None
    if args.toggles or args.split or args.cold:
        start, stop, split_by, cold = toggles()
        marks = None if args.cold else (start, stop)  # cold: each window switches it on
        split = cold if args.cold else split_by if args.split else None
    if args.listener:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            cpu, requests, calls = runner.run(listener_flow(args.certs, marks, args.settle))
        print(
            f"{args.certs} certificates through the listener, {requests} requests: "
            f"{1e3 * cpu:.3f} ms CPU each in the CA, {calls / requests:.1f} read/write "
            f"system calls per request (pid {os.getpid()})"
        )
        return
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    cpu = run(args.certs, args.client_only, profile, marks, split, args.cold)
    what = "client alone" if args.client_only else "CA and client"
    print(f"{args.certs} certificates, {what}: {1e3 * cpu:.3f} ms CPU each (pid {os.getpid()})")
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    main()

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

`--cache-sim --listener` takes the same windows through the listener (`--listener`'s
set-up), beside the in-process ones and the stand-in's, all in one report. The driver,
in its own process and not under valgrind (nor are its TLS, aiohttp and signing), names
each request's kind on a pipe before it sends it (`Windowed`) and waits for the CA's
answer; the CA, on its event loop, closes the window open and opens the next (`Control`).
A window holds the request from its first TLS record read to its response written, and
what the CA does after it until the driver's next mark; before each poll the driver asks
for a drain in place of waiting, in a window of its own as in process. After the
certificates come as many windows with nothing in them but the marks (`control`): what
the marks take of each window, at most, shown and not subtracted. The report splits the
lines by part (PARTS, by shared object; the kernel's share is not seen by valgrind), by
function (what the listener adds: its lines less the in-process ones), and, from a run
of the same windows outside valgrind (`CodeSeen`), the Python code objects each window
runs, by owner: the project's modules (`acmekit.http1` is the listener's), generated
methods, the standard library's, installed packages', the measurement's. With
PYTHONHASHSEED=0, as above:

    .venv/bin/python bench/request_path_cpu.py --callgrind 10 --cache-sim --listener --top 40

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
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import CodeType, FrameType
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
        if isinstance(self.acme, Recording | Windowed):
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
        await self.finalized(order, order_url, name, settle)

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
        await self.finalized(order, order_url, name, settle)

    async def finalized(
        self, order: Any, order_url: str, name: str, settle: Callable[[], Awaitable[None]]
    ) -> None:
        """finalize the ready order, poll it valid, download its certificate."""
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


class Windowed(HttpRawAcme):
    """The listener variant's transport under `--cache-sim`: before each request it names
    the request's kind to the CA's process on a pipe (`mark`), and sends the request only
    once the CA has opened a window for it (`Control`)."""

    def __init__(self, base: str, root_pem: str, control: tuple[int, int]) -> None:
        super().__init__(base, root_pem)
        self.kind = ""  # the driver's kind of request under way
        self.to_ca, self.from_ca = control

    def mark(self, what: str) -> None:
        """Tell the CA `what` comes next, and wait for its answer. Blocking: the driver
        has nothing else to do meanwhile, and its loop is no part of the figures."""
        os.write(self.to_ca, what.encode() + b"\n")
        assert os.read(self.from_ca, 1) == b"."

    async def request(
        self, method: str, url: str, body: bytes = b"", content_type: str | None = None
    ) -> Resp:
        if self.kind:
            self.mark(self.kind)
        return await super().request(method, url, body, content_type)


class Control:
    """The CA's side of `Windowed`, on its event loop: each mark read from the driver
    closes the window open (callgrind's named dump, instrumentation off) and, between
    the marks `start` and `stop`, opens one named after it (instrumentation switched on
    afresh: counts zeroed, simulated caches emptied). A window thus holds a request and
    what the CA does after it until the driver's next mark; `drain` waits, in a window of
    its own, for the validations and issuances under way, as the in-process flow's drains
    do. Each mark is answered once handled."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fds: tuple[int, int],
        split: Split,
        drain: Callable[[], Awaitable[None]],
    ) -> None:
        self.loop = loop
        self.marks, self.answers = fds
        self.split = split
        self.drain = drain
        self.armed = False
        self.starting = loop.create_future()  # the driver's `start`, unanswered
        self.open: bytes | None = None  # the window's name
        loop.add_reader(self.marks, self.read)

    async def arm(self) -> None:
        """Windows from now on: answer the driver's `start`, once it has come."""
        await self.starting
        self.armed = True
        os.write(self.answers, b".")

    def read(self) -> None:
        mark = os.read(self.marks, 64).rstrip(b"\n")  # one: the driver awaits each answer
        if not mark:  # the driver has gone
            return self.close()
        if self.open is not None:
            self.split[1](b"request-" + self.open)
            self.open = None
        if mark == b"start":
            return self.starting.set_result(None)  # answered by `arm`
        if mark == b"stop":
            self.armed = False
        elif self.armed:
            self.split[0]()
            self.open = mark
        if mark == b"drain":
            self.loop.create_task(self.drained())
        else:
            os.write(self.answers, b".")

    async def drained(self) -> None:
        await self.drain()
        os.write(self.answers, b".")

    def close(self) -> None:
        if self.marks >= 0:
            self.loop.remove_reader(self.marks)
            os.close(self.marks)
            os.close(self.answers)
            self.marks = self.answers = -1


LINE = 64  # bytes in a cache line


class CodeSeen:
    """`--code`: which Python code objects each window runs (`sys.setprofile`, outside
    valgrind; the same windows as `--cold`'s), and the lines their objects take (the
    header and the quickened bytecode, `sys.getsizeof`): the bytecode's share of the
    interpreter's data lines, by whose code it is (`owner`)."""

    def __init__(self) -> None:
        self.seen: set[CodeType] = set()
        self.windows: list[tuple[str, set[CodeType]]] = []

    def profile(self, frame: FrameType, event: str, _: object) -> None:
        if event == "call":  # a call, or a coroutine's or generator's resumption
            self.seen.add(frame.f_code)

    def begin(self) -> None:
        self.seen = set()
        sys.setprofile(self.profile)

    def end(self, name: bytes) -> None:
        sys.setprofile(None)
        self.windows.append((name.decode(), self.seen))

    def summary(self) -> dict[str, dict[str, list[int]]]:
        """By kind of window (`request-control` apart from the rest): each owner's code
        objects and their lines, summed over the windows."""
        found: dict[str, dict[str, list[int]]] = {}
        for name, codes in self.windows:
            owners = found.setdefault("control" if name == "request-control" else "ca", {})
            for code in codes:
                counts = owners.setdefault(owner(code.co_filename), [0, 0])
                counts[0] += 1
                counts[1] += -(-sys.getsizeof(code) // LINE)
        return found


STDLIB = sysconfig.get_paths()["stdlib"]


def owner(filename: str) -> str:
    """Whose code a file is: the project's module (acmekit.http1, acmekit.server.app...),
    the measurement's (this script, the test kit's driver), the standard library's (by
    module), an installed package's, or generated (the project's frozen dataclasses'
    methods, mostly)."""
    path = Path(filename)
    if path.name == Path(__file__).name or "acmekit_testkit" in path.parts:
        return "measurement"
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1]
    if "acmekit" in path.parts:
        module = path.parts[path.parts.index("acmekit") :]
        return ".".join(module).removesuffix(".py").removesuffix(".__init__")
    if filename.startswith(STDLIB):
        return "stdlib " + Path(filename).relative_to(STDLIB).parts[0].removesuffix(".py")
    if filename.startswith("<frozen"):
        return "stdlib"
    if filename == "<string>":  # what dataclasses and namedtuple generate
        return "generated methods"
    return "other"


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


async def listener_flow(
    certs: int, marks: Toggles, settle: float, split: Split | None = None
) -> tuple[float, int, int]:
    """The same certificates through the CA's listener (`Http1Server` over TLS on
    loopback, as `acmekit server` serves) from a driver in a process of its own: CPU
    seconds per certificate in this process, and the driver's requests, in the window the
    driver marks (after its account and a warm certificate). The app's lifespan is not
    started: its housekeeping is no part of a request, and the in-process flow has none.
    With `split` (`--cache-sim`), the driver marks each request's window and each drain's
    on a pipe (`Windowed`, `Control`), after QUICKENED warm certificates."""
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
        control, theirs = None, ()
        if split is not None:  # two pipes: the driver's marks, and the answers
            (marks_in, marks_out), (answers_in, answers_out) = os.pipe(), os.pipe()
            theirs = (marks_out, answers_in)
            argv += ["--control", *map(str, theirs)]
            loop = asyncio.get_running_loop()
            control = Control(loop, (marks_in, answers_out), split, assembly.app.authority.drain)
        driver = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            *("--certs", str(certs), "--settle", str(settle)),
            stdout=asyncio.subprocess.PIPE,
            pass_fds=theirs,
        )
        for fd in theirs:
            os.close(fd)
        assert driver.stdout is not None
        try:
            assert await driver.stdout.readline() == b"start\n"
            if control is not None:  # windows only once the line is read: none holds it
                await control.arm()
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
            if control is not None:
                control.close()
            await server.shutdown(5.0)
        return used / certs, int(stop.split()[1]), calls


async def drive(
    base: str,
    root: str,
    key: jose.PrivateKey,
    certs: int,
    wait: float,
    control: tuple[int, int] | None = None,
) -> None:
    """The listener variant's driver, in its own process: an account and a warm
    certificate, then `start`, the measured certificates, and `stop REQUESTS`. With
    `control` (`--cache-sim`: `Windowed`'s pipes), QUICKENED warm certificates, a mark
    before each request, a drain of the CA (in its process) in place of the wait before
    each poll, and after the certificates as many windows with nothing in them but the
    marks (`control`: what the marks themselves cost the CA)."""
    acme = HttpRawAcme(base, root) if control is None else Windowed(base, root, control)
    driver = Driver(acme, key)

    async def settle() -> None:
        if isinstance(acme, Windowed):
            acme.mark("drain")
        else:
            await asyncio.sleep(wait)

    try:
        await driver.register()
        for n in range(1 if control is None else QUICKENED):
            await driver.certificate(f"warm{n or ''}.example.test", settle)
        print("start", flush=True)
        if isinstance(acme, Windowed):
            acme.mark("start")
        before = driver.requests
        for i in range(certs):
            await driver.certificate(f"c{i}.example.test", settle)
        if isinstance(acme, Windowed):
            for _ in range(certs):
                acme.mark("control")
            acme.mark("stop")
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


# The parts of the CA's process a working set is split into, by the shared object's path
# (the first that matches); the kernel's share (the system calls' copies, TCP, the
# socket buffers) is not seen by valgrind and is in no part.
PARTS = (
    ("measurement: ctypes, libffi, toggles", ("/_ctypes.", "/libffi.", "/t.so")),
    ("cryptography (its own OpenSSL)", ("/cryptography/",)),
    ("ssl, hashlib: the system's OpenSSL", ("/_ssl.", "/_hashlib.", "/libssl.", "/libcrypto.")),
    ("SQLite and _sqlite3", ("/libsqlite3.", "/_sqlite3.")),
    ("uvloop (libuv)", ("/uvloop/",)),
    ("httptools (llhttp)", ("/httptools/",)),
    ("libc, libm, ld.so", ("/libc.", "/libm.", "/ld-linux")),
    ("interpreter and its C modules", ("/libpython", "/lib-dynload/", "/bin/python")),
)
LL_MISSES = ("ILmr", "DLmr", "DLmw")  # the lines a window touches: code, data read, written


def part_of(ob: str) -> str:
    return next((part for part, marks in PARTS if any(m in ob for m in marks)), "other")


def lines_by_part(dumps: list[str], certs: int) -> dict[str, tuple[float, float]]:
    """Lines touched per certificate by part (PARTS): code, data."""
    parts: dict[str, tuple[float, float]] = {}
    code, data = self_cost(dumps, ("ILmr",)), self_cost(dumps, ("DLmr", "DLmw"))
    for where in code.keys() | data.keys():
        c, d = parts.get(part_of(where[0]), (0.0, 0.0))
        parts[part_of(where[0])] = (c + code[where] / certs, d + data[where] / certs)
    return parts


def window_row(dumps: list[str], n: int) -> dict[str, float]:
    """Each event, the windows and the lines' kilobytes, per `n` (certificates)."""
    total = totals(dumps)
    row: dict[str, float] = {event: round(total[event] / n) for event in ("Ir", *MISSES)}
    row["windows"] = len(dumps) / n
    row["LL_kb"] = round(sum(total[event] for event in LL_MISSES) * LINE / 1024 / n)
    return row


def kinds_row(dumps: list[str]) -> dict[str, dict[str, int]]:
    by_kind = {}
    for kind, windows in _by_kind(dumps).items():
        total, n = totals(windows), len(windows)
        by_kind[kind] = {
            "windows": n,
            "Ir": round(total["Ir"] / n),
            "ILmr": round(total["ILmr"] / n),
            "DLm": round((total["DLmr"] + total["DLmw"]) / n),
        }
    return by_kind


def report_cache_sim(
    certs: int, top: int, keep: Path | None, listener: bool = False, log: bool = False
) -> None:
    """The CA's working set per certificate (`--cache-sim`): each request and each drain
    in a window of its own that starts with empty simulated caches, so that its
    last-level misses are the distinct lines it touches; the stand-in app's run says
    what the driver's transport takes of the same windows. With `listener`, the same
    windows through the listener (`Control`), beside the in-process ones: what the
    listener adds, by part and by function; its `control` windows (the marks alone) say
    what the marks take of each window."""
    options = ("--cache-sim=yes", *CACHES)
    logs = ["--log"] if log else []
    with tempfile.TemporaryDirectory(prefix="acmekit-path-callgrind-") as tmp:

        def windows(variant: list[str]) -> list[str]:
            argv = [*variant, "--cold", *logs]
            return callgrind(certs, argv, Path(tmp), keep, "request-", options)[0]

        through = windows(["--listener"]) if listener else []
        ca, stand_in = windows([]), windows(["--client-only"])
    caches = " ".join(option.removeprefix("--") for option in CACHES)
    if not listener:
        rows = {"ca": window_row(ca, certs), "stand_in": window_row(stand_in, certs)}
        by_kind = kinds_row(ca)
        print(json.dumps({"certs": certs, "caches": caches, "per_cert": rows, "by_kind": by_kind}))
        _top_misses(ca, certs, top)
        return
    code = {
        "listener": code_seen(certs, ["--listener", *logs]),
        "in process": code_seen(certs, logs),
    }
    control = [text for text in through if "request-control" in text.split("\nevents:", 1)[0]]
    served = [text for text in through if text not in control]
    rows = {
        "listener": window_row(served, certs),
        "in_process": window_row(ca, certs),
        "stand_in": window_row(stand_in, certs),
        "control_per_window": window_row(control, len(control)),
    }
    by_kind = {"listener": kinds_row(served), "in_process": kinds_row(ca)}
    print(json.dumps({"certs": certs, "caches": caches, "per_cert": rows, "by_kind": by_kind}))
    marks = lines_by_part(control, len(control) / rows["listener"]["windows"])
    _parts_side_by_side(lines_by_part(served, certs), lines_by_part(ca, certs), marks)
    _code_side_by_side(code, certs)
    if top:
        added = self_cost(served, LL_MISSES)
        added.subtract(self_cost(ca, LL_MISSES))
        print("\nlines per certificate the listener adds, by function (own; listener's less")
        print("in process; code + data):")
        code_lines = self_cost(served, ("ILmr",))
        code_lines.subtract(self_cost(ca, ("ILmr",)))
        for (ob, fn), n in added.most_common(top):
            c = code_lines[ob, fn] / certs
            print(f"{n / certs:10,.0f}  ({c:,.0f} code)  {Path(ob).name}  {fn}")
    _top_misses(served, certs, top)


def _parts_side_by_side(
    listener: dict[str, tuple[float, float]],
    in_process: dict[str, tuple[float, float]],
    marks: dict[str, tuple[float, float]],
) -> None:
    """Lines per certificate by part: through the listener, in process, the difference,
    and the marks' own windows (`control`) as many times as a certificate has windows:
    at most what the marks add to the listener's figures (their lines overlap the CA's)."""
    print("\nlines per certificate by part, code + data (MB):")
    print(f"{'':38} {'listener':>26} | {'in process':>26} | {'added':>8} | marks at most")
    order = sorted(set(listener) | set(in_process), key=lambda p: -sum(listener.get(p, (0, 0))))
    sums = [0.0, 0.0, 0.0]
    for part in order:
        (lc, ld), (ic, id_) = listener.get(part, (0, 0)), in_process.get(part, (0, 0))
        mark = sum(marks.get(part, (0, 0)))
        sums[0] += lc + ld
        sums[1] += ic + id_
        sums[2] += mark
        print(
            f"{part:38} {lc:7,.0f} + {ld:7,.0f} ({(lc + ld) * LINE / 1e6:5.2f}) | "
            f"{ic:7,.0f} + {id_:7,.0f} ({(ic + id_) * LINE / 1e6:5.2f}) | "
            f"{lc + ld - ic - id_:+8,.0f} | {mark:6,.0f}"
        )
    mb = [n * LINE / 1e6 for n in sums]
    print(
        f"{'in all':38} {sums[0]:17,.0f} ({mb[0]:5.2f}) | {sums[1]:17,.0f} ({mb[1]:5.2f}) | "
        f"{sums[0] - sums[1]:+8,.0f} | {sums[2]:6,.0f}"
    )
    print("(the kernel's part, system calls and TCP on loopback, is not seen by valgrind)")


def code_seen(certs: int, variant: list[str]) -> dict[str, list[int]]:
    """The code objects (and their lines) the CA's windows run, by owner (`CodeSeen`):
    one run outside valgrind, `--code`."""
    argv = [sys.executable, __file__, "--certs", str(certs), *variant, "--code"]
    said = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True).stdout
    found = re.search(r"^code (.*)$", said, re.M)
    assert found, said
    seen: dict[str, list[int]] = json.loads(found[1])["ca"]
    return seen


def _code_side_by_side(code: dict[str, dict[str, list[int]]], certs: int) -> None:
    """Python code objects run per certificate (summed over the windows) and their lines,
    by owner: the project's modules, generated methods, the standard library's modules,
    installed packages, the measurement's."""
    print("\nPython code objects per certificate, and their lines (header and bytecode):")
    print(f"{'':34} " + " | ".join(f"{variant:>18}" for variant in code))
    owners = sorted(
        {name for seen in code.values() for name in seen},
        key=lambda name: -max(seen.get(name, [0, 0])[1] for seen in code.values()),
    )
    groups: dict[str, list[list[float]]] = {}
    for name in owners:
        counts = [[n / certs for n in seen.get(name, [0, 0])] for seen in code.values()]
        group = "the project's" if name.startswith("acmekit") else "libraries'"
        group = name if name in ("measurement", "generated methods") else group
        sums = groups.setdefault(group, [[0.0, 0.0] for _ in code])
        for total, (objects, lines) in zip(sums, counts, strict=True):
            total[0] += objects
            total[1] += lines
        if max(lines for _, lines in counts) >= 20:
            print(f"{name:34} " + _cells(counts))
    for group, sums in groups.items():
        print(f"{'in all, ' + group:34} " + _cells(sums))


def _cells(counts: list[list[float]]) -> str:
    return " | ".join(f"{objects:6,.0f} {lines:6,.0f} lines" for objects, lines in counts)


def _top_misses(dumps: list[str], certs: int, top: int) -> None:
    for title, events in (("instruction", ("ILmr",)), ("data", ("DLmr", "DLmw"))):
        if not top:
            break
        cost = self_cost(dumps, events)
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
    parser.add_argument("--code", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cache-sim", action="store_true", help="with --callgrind: the working set per cert"
    )
    parser.add_argument("--drive", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--control", nargs=2, type=int, help=argparse.SUPPRESS)
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
        control = (args.control[0], args.control[1]) if args.control else None
        asyncio.run(drive(base, root, key, args.certs, args.settle, control))
        return
    if args.evict:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(warm_and_cold(args.certs, args.evict))
        return
    if args.callgrind and args.cache_sim:
        report_cache_sim(args.callgrind, args.top, args.keep, args.listener, args.log)
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
    code = CodeSeen() if args.code else None
    if code is not None:  # the same windows as --cold's, outside valgrind
        split = (code.begin, code.end)
    if args.listener:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            flow = listener_flow(args.certs, marks, args.settle, split)
            cpu, requests, calls = runner.run(flow)
        print(
            f"{args.certs} certificates through the listener, {requests} requests: "
            f"{1e3 * cpu:.3f} ms CPU each in the CA, {calls / requests:.1f} read/write "
            f"system calls per request (pid {os.getpid()})"
        )
        if code is not None:
            print("code", json.dumps(code.summary()))
        return
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    cpu = run(args.certs, args.client_only, profile, marks, split, args.cold or args.code)
    what = "client alone" if args.client_only else "CA and client"
    print(f"{args.certs} certificates, {what}: {1e3 * cpu:.3f} ms CPU each (pid {os.getpid()})")
    if code is not None:
        print("code", json.dumps(code.summary()))
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    main()

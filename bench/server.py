"""CA server benchmark: `acmekit server` and Pebble under the same load, in the same run.

What it measures: for each load generator and server, certificates per second, the
server's CPU per certificate and per request, requests per certificate, and two counts
that do not move with the machine's load: the server's read/write system calls
(/proc/PID/io) and context switches (/proc/PID/task/*/status) per request; then the
ratio acmekit / pebble under each generator. To profile the CA under either generator,
attach a sampling profiler to its PID while a run is going (`py-spy record -p PID`,
from the `bench` extra).

How: one load generator, written here over aiohttp (one ClientSession per server, trusting
that server's root) and `acmekit.protocol.jose.sign`, runs N concurrent workers. Each worker
registers one account up front (not measured), then for each of its certificates: newOrder
for a distinct name (w{i}-{n}.bench.test), fetch the authorization, POST {} to its http-01
challenge, poll the authorization every 50 ms, finalize with a P-256 CSR made before the
measured phase, poll the order and download the certificate. badNonce is retried with the
nonce that came with the rejection. Replay-Nonces are pooled across workers, so newNonce is
only called when the pool is empty. An aiohttp.web responder in this process serves the
http-01 key authorizations. `pebble-challtestsrv` answers every name with 127.0.0.1 for both
servers' validation authorities.

A second load generator ("acme") is built on certbot's `acme` library from PyPI, as most
Python clients are: four worker processes, each with its own `ClientNetwork` (one
requests session, its own nonces: the one from each response, HEAD newNonce when none is
in hand), each getting its certificates one after another through `ClientV2`; the
authorization and the order are polled from 10 ms, doubling up to 250 ms. Its workers
hand their key authorizations to the same responder through a shared dict.

Server CPU is utime + stime from /proc/PID/stat of the server process and its descendants,
read just before and just after the measured phase. Pebble runs with PEBBLE_VA_NOSLEEP=1,
PEBBLE_WFE_NONCEREJECT=0 and PEBBLE_AUTHZREUSE=0; each server gets a fresh state.

Also printed: the server's kernel side per request (its system share of the CPU, minor
page faults, moves between CPUs), none of which shows in instruction counts.

Three ways to ask why a server's CPU per request differs between the generators:
`--callgrind DIR` runs the acmekit servers under `valgrind --tool=callgrind
--instr-atstart=no` and switches instrumentation on for the measured phase only
(`callgrind_control`), so each row gets the CA's instructions per certificate and per
request, and the TCP connections it accepted and TLS connections it set up per
certificate (calls to `accept4` and `SSL_new`); the dumps stay in DIR for
`callgrind_annotate`. `--pin` puts each server alone on the last CPU and everything
else on the others. `--burn N` runs N processes at nice 19 that write over 32 MB in a
loop (the cores' idle moments filled, caches left cold).

Where a server's CPU time goes: `--perf DIR` samples every server (Pebble too) with
`perf record -e cpu-clock` over the measured phase and splits its CPU per certificate by
shared object: the interpreter, cryptography and OpenSSL, the kernel, SQLite, libc,
uvloop and httptools, and for Pebble its one Go binary (`bench/_perf.py`).

Run: `python bench/server.py [--workers 8] [--certs 200] [--rounds 3] [--servers acmekit,pebble]
[--clients aiohttp,acme] [--callgrind DIR] [--pin] [--burn N] [--perf DIR]`
(`acmekit-nolint` is the same CA with linting before signing off; `acmekit-pg` and
`acmekit-nolint-pg` the same on a fresh PostgreSQL database at 127.0.0.1:5432;
`acmekit-ct` logs every certificate in two `acmekit ct` logs on loopback,
`acmekit-ct-nofinal` without the final certificate's add-chain, `acmekit-ct-nolint` with
linting off, to set against `acmekit-nolint`; `acmekit-nolint-limits` and
`acmekit-nolint-limits-pg` run with rate limits on, each sized never to refuse the load,
to set against `acmekit-nolint` and `acmekit-nolint-pg`.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import _perf
from _callgrind import Counts, Phase, wrapper
from _common import (
    CLK_TCK,
    RAISED_LIMITS,
    Server,
    cpu_seconds,
    free_port,
    fresh_database,
    running_acmekit,
    running_challtestsrv,
)
from _common import running_pebble as _running_pebble
from acmekit.protocol import jose
from acmekit.protocol.challenges import HTTP01_PATH

PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
POLL_INTERVAL = 0.05
CERT_DEADLINE = 60.0  # seconds one certificate may take before it counts as failed
MAX_TRIES = 10  # attempts per request when the server answers badNonce
BAD_NONCE = "urn:ietf:params:acme:error:badNonce"
SERVER_CPU = max(os.sched_getaffinity(0))  # where --pin puts the servers (before it pins)


class BenchError(Exception):
    """A server answered something the flow cannot go on from."""


@dataclass(frozen=True)
class Reply:
    status: int
    location: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def io_calls(pid: int) -> int:
    """read- and write-family system calls of `pid` so far (syscr + syscw of /proc/PID/io,
    every thread): a count that does not move with the machine's load, unlike CPU time."""
    try:
        fields = dict(
            line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().split("\n") if line
        )
    except OSError:
        return 0
    return int(fields["syscr"]) + int(fields["syscw"])


def switches(pid: int) -> int:
    """Context switches of every thread of `pid` so far (voluntary ones are the waits for
    the next packet or lock): how often the server went to sleep and was woken."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[-1])
    return total


@dataclass(frozen=True)
class Kernel:
    """What the kernel did for `pid` (every thread) so far, none of it in user-space
    instruction counts: its system CPU time, minor page faults, and moves between CPUs."""

    system: float  # seconds of stime
    faults: int
    migrations: int

    @classmethod
    def of(cls, pid: int) -> Kernel:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return cls(0.0, 0, 0)
        fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3, `state`
        moves = 0
        for task in tasks:
            with suppress(OSError):
                for line in Path(f"/proc/{pid}/task/{task}/sched").read_text().splitlines():
                    if line.startswith("se.nr_migrations"):
                        moves += int(line.split(":")[1])
        return cls(int(fields[12]) / CLK_TCK, int(fields[7]), moves)

    def __sub__(self, before: Kernel) -> Kernel:
        return Kernel(
            self.system - before.system,
            self.faults - before.faults,
            self.migrations - before.migrations,
        )


# ---------------------------------------------------------------- the ACME wire


class Acme:
    """Signed POSTs to one server through one session, with a shared pool of nonces."""

    def __init__(self, session: aiohttp.ClientSession, directory: dict[str, Any]) -> None:
        self.session = session
        self.directory = directory
        self.nonces: list[str] = []
        self.requests = 0

    async def _nonce(self) -> str:
        if self.nonces:
            return self.nonces.pop()
        self.requests += 1
        async with self.session.head(self.directory["newNonce"]) as resp:
            return resp.headers["Replay-Nonce"]

    async def post(
        self, key: ec.EllipticCurvePrivateKey, url: str, payload: Any, kid: str | None
    ) -> Reply:
        """One signed POST (payload None is POST-as-GET); badNonce is retried."""
        nonce = await self._nonce()
        for _ in range(MAX_TRIES):
            body = json.dumps(jose.sign(key, payload, url=url, nonce=nonce, kid=kid))
            reply, fresh = await self._send(url, body)
            if reply.status < 400:
                if fresh:
                    self.nonces.append(fresh)
                return reply
            if reply.status != 400 or BAD_NONCE not in reply.body.decode(errors="replace"):
                raise BenchError(f"{url}: {reply.status} {reply.body[:300]!r}")
            nonce = fresh or await self._nonce()
        raise BenchError(f"{url}: badNonce {MAX_TRIES} times")

    async def _send(self, url: str, body: str) -> tuple[Reply, str | None]:
        self.requests += 1
        headers = {"Content-Type": "application/jose+json"}
        async with self.session.post(url, data=body, headers=headers) as resp:
            data = await resp.read()
            reply = Reply(resp.status, resp.headers.get("Location"), data)
            return reply, resp.headers.get("Replay-Nonce")


@dataclass
class Worker:
    """One account and the certificates it is to get: (name, CSR DER) pairs."""

    index: int
    key: ec.EllipticCurvePrivateKey
    jobs: list[tuple[str, bytes]]
    kid: str = ""
    thumbprint: str = ""
    done: int = 0
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- one certificate


async def poll(acme: Acme, worker: Worker, url: str, until: str, deadline: float) -> Any:
    """POST-as-GET `url` every POLL_INTERVAL until its status is `until`."""
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL)
        doc = (await acme.post(worker.key, url, None, worker.kid)).json()
        if doc["status"] == until:
            return doc
        if doc["status"] == "invalid":
            raise BenchError(f"{url} invalid: {json.dumps(doc)[:400]}")
    raise BenchError(f"{url} not {until} in time")


async def authorize(
    acme: Acme, worker: Worker, authz_url: str, tokens: dict[str, str], deadline: float
) -> None:
    """Answer the authorization's http-01 challenge and wait until it is valid."""
    authz = (await acme.post(worker.key, authz_url, None, worker.kid)).json()
    if authz["status"] == "valid":
        return
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    token = chall["token"]
    tokens[token] = f"{token}.{worker.thumbprint}"
    try:
        answer = (await acme.post(worker.key, chall["url"], {}, worker.kid)).json()
        if answer.get("status") != "valid":
            await poll(acme, worker, authz_url, "valid", deadline)
    finally:
        tokens.pop(token, None)


async def issue(acme: Acme, worker: Worker, name: str, csr: bytes, tokens: dict[str, str]) -> None:
    """One certificate for `name`: order, http-01, finalize, download."""
    deadline = time.monotonic() + CERT_DEADLINE
    ident = {"identifiers": [{"type": "dns", "value": name}]}
    created = await acme.post(worker.key, acme.directory["newOrder"], ident, worker.kid)
    order, order_url = created.json(), created.location
    if order_url is None:
        raise BenchError("newOrder answered without Location")
    for authz_url in order["authorizations"]:
        await authorize(acme, worker, authz_url, tokens, deadline)
    payload = {"csr": jose.b64e(csr)}
    order = (await acme.post(worker.key, order["finalize"], payload, worker.kid)).json()
    if order["status"] != "valid":
        order = await poll(acme, worker, order_url, "valid", deadline)
    cert = await acme.post(worker.key, order["certificate"], None, worker.kid)
    if b"BEGIN CERTIFICATE" not in cert.body:
        raise BenchError(f"{name}: certificate download gave no PEM")


async def run_worker(acme: Acme, worker: Worker, tokens: dict[str, str]) -> None:
    for name, csr in worker.jobs:
        try:
            await issue(acme, worker, name, csr, tokens)
            worker.done += 1
        except (TimeoutError, BenchError, aiohttp.ClientError, KeyError) as exc:
            worker.errors.append(f"{name}: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- setup, not measured


def make_csr(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    san = x509.SubjectAlternativeName([x509.DNSName(name)])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def make_workers(count: int, certs: int) -> list[Worker]:
    """`certs` distinct names spread over `count` workers, each with its CSRs ready."""
    workers = []
    for i in range(count):
        csr_key = ec.generate_private_key(ec.SECP256R1())
        names = [f"w{i}-{n}.bench.test" for n in range(len(range(i, certs, count)))]
        jobs = [(name, make_csr(csr_key, name)) for name in names]
        workers.append(Worker(i, ec.generate_private_key(ec.SECP256R1()), jobs))
    return workers


async def register(acme: Acme, worker: Worker) -> None:
    url = acme.directory["newAccount"]
    reply = await acme.post(worker.key, url, {"termsOfServiceAgreed": True}, None)
    if reply.location is None:
        raise BenchError("newAccount answered without Location")
    worker.kid = reply.location
    worker.thumbprint = jose.thumbprint(worker.key)


@asynccontextmanager
async def http01_responder(
    port: int, tokens: dict[str, str], shared: Any = None
) -> AsyncIterator[None]:
    """Serve tokens[token] at /.well-known/acme-challenge/{token} on 127.0.0.1:port, or
    shared[token] (the acme generator's processes write there)."""

    async def answer(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        value = tokens.get(token)
        if value is None and shared is not None:
            value = shared.get(token)
        if value is None:
            return web.Response(status=404)
        return web.Response(text=value, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get(HTTP01_PATH + "{token}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------- one server's run


@dataclass(frozen=True)
class Result:
    server: str
    client: str
    certs: int
    failed: int
    wall: float
    server_cpu: float
    client_cpu: float
    requests: int
    first_error: str | None
    syscalls: int = 0
    switches: int = 0
    counts: Counts | None = None  # under callgrind: the measured phase's instructions
    kernel: Kernel = Kernel(0.0, 0, 0)
    split: dict[str, float] | None = None  # with --perf: CPU shares by group of objects

    @property
    def per_second(self) -> float:
        return self.certs / self.wall if self.wall else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.server_cpu / self.certs if self.certs else float("nan")

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu / self.requests if self.requests else float("nan")


async def measure(
    server: Server,
    workers: list[Worker],
    tokens: dict[str, str],
    phase: Phase | None = None,
    sampler: _perf.Sampler | None = None,
) -> Result:
    """Register every worker's account, then time and meter the certificates (and count
    the server's instructions when it runs under callgrind: `phase`; sample where its CPU
    time goes: `sampler`)."""
    ctx = ssl.create_default_context(cafile=str(server.root_path))
    connector = aiohttp.TCPConnector(ssl=ctx, limit=4 * len(workers))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(server.directory_url) as resp:
            acme = Acme(session, await resp.json())
        await asyncio.gather(*(register(acme, w) for w in workers))
        acme.requests = 0
        if phase is not None:
            phase.start()
        if sampler is not None:
            sampler.start()
        cpu0, client0, t0 = cpu_seconds(server.pid), time.process_time(), time.monotonic()
        io0, sw0, kernel0 = io_calls(server.pid), switches(server.pid), Kernel.of(server.pid)
        await asyncio.gather(*(run_worker(acme, w, tokens) for w in workers))
        wall = time.monotonic() - t0
        server_cpu = cpu_seconds(server.pid) - cpu0
        io, sw = io_calls(server.pid) - io0, switches(server.pid) - sw0
        kernel = Kernel.of(server.pid) - kernel0
        client_cpu = time.process_time() - client0
        counts = await asyncio.to_thread(phase.stop) if phase is not None else None
        split = await asyncio.to_thread(sampler.stop) if sampler is not None else None
    errors = [e for w in workers for e in w.errors]
    done = sum(w.done for w in workers)
    return Result(
        server.name, "aiohttp", done, len(errors), wall, server_cpu, client_cpu, acme.requests,
        errors[0] if errors else None, io, sw, counts, kernel, split,
    )  # fmt: skip


# ------------------------------------------------- the second generator: certbot's `acme`

ACME_PROCESSES = 4
POLL_FIRST, POLL_MAX = 0.01, 0.25  # the acme generator's polls: 10 ms, doubling to 250 ms


def _backoff() -> Iterator[float]:
    delay = POLL_FIRST
    while True:
        yield delay
        delay = min(2 * delay, POLL_MAX)


@dataclass(frozen=True)
class AcmeJob:
    """What one worker process gets: where to go, its account key and its certificates."""

    directory_url: str
    root_path: str
    key_pem: bytes
    jobs: list[tuple[str, bytes]]  # (name, CSR PEM)


def acme_worker(job: AcmeJob, tokens: Any, ready: Any, go: Any, out: Any) -> None:
    """One process of the acme generator: register (not measured), wait for `go`, then get
    every certificate in turn; put (done, errors, requests, client CPU s) on `out`."""
    import josepy
    from acme import challenges, messages
    from acme.client import ClientNetwork, ClientV2

    class CountingNetwork(ClientNetwork):
        requests = 0

        def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            return super()._send_request(method, url, *args, **kwargs)

    key = serialization.load_pem_private_key(job.key_pem, None)
    jwk = josepy.JWKEC(key=key)
    net = CountingNetwork(jwk, alg=josepy.ES256, verify_ssl=job.root_path)  # type: ignore[arg-type]
    client = ClientV2(ClientV2.get_directory(job.directory_url, net), net)
    client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    ready.wait()
    go.wait()
    net.requests, cpu0 = 0, time.process_time()
    done, errors = 0, []

    def poll_authz(authzr: Any, deadline: float) -> None:
        for delay in _backoff():
            if time.monotonic() > deadline:
                raise BenchError(f"{authzr.uri} not valid in time")
            time.sleep(delay)
            authzr, _ = client.poll(authzr)
            if authzr.body.status == messages.STATUS_VALID:
                return
            if authzr.body.status == messages.STATUS_INVALID:
                raise BenchError(f"{authzr.uri} invalid")

    def poll_order(orderr: Any, deadline: float) -> Any:
        body = orderr.body
        for delay in _backoff():
            if body.status == messages.STATUS_VALID:
                return body
            if body.status == messages.STATUS_INVALID or time.monotonic() > deadline:
                raise BenchError(f"{orderr.uri}: {body.status}")
            time.sleep(delay)
            body = messages.Order.from_json(client._post_as_get(orderr.uri).json())
        raise AssertionError("unreachable")

    for name, csr_pem in job.jobs:
        deadline = time.monotonic() + CERT_DEADLINE
        try:
            orderr = client.new_order(csr_pem)
            for authzr in orderr.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue
                challb = next(
                    c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)
                )
                response, validation = challb.response_and_validation(jwk)
                tokens[challb.chall.encode("token")] = validation
                try:
                    client.answer_challenge(challb, response)
                    poll_authz(authzr, deadline)
                finally:
                    tokens.pop(challb.chall.encode("token"), None)
            orderr = client.begin_finalization(orderr)
            body = poll_order(orderr, deadline)
            pem = client._post_as_get(body.certificate).text
            if "BEGIN CERTIFICATE" not in pem:
                raise BenchError(f"{name}: certificate download gave no PEM")
            done += 1
        except Exception as exc:  # the run reports it and goes on with the next name
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    out.put((done, errors, net.requests, time.process_time() - cpu0))


async def measure_acme(
    server: Server,
    certs: int,
    tokens: Any,
    manager: Any,
    phase: Phase | None = None,
    sampler: _perf.Sampler | None = None,
) -> Result:
    """The acme generator against `server`: ACME_PROCESSES processes sharing `certs` names."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = manager.Barrier(ACME_PROCESSES + 1), manager.Event(), manager.Queue()
    procs = []
    for i in range(ACME_PROCESSES):
        csr_key = ec.generate_private_key(ec.SECP256R1())
        names = [f"a{i}-{n}.bench.test" for n in range(len(range(i, certs, ACME_PROCESSES)))]
        pems = [
            x509.load_der_x509_csr(make_csr(csr_key, name)).public_bytes(serialization.Encoding.PEM)
            for name in names
        ]
        key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        job = AcmeJob(
            server.directory_url,
            str(server.root_path),
            key_pem,
            list(zip(names, pems, strict=True)),
        )
        proc = ctx.Process(target=acme_worker, args=(job, tokens, ready, go, out), daemon=True)
        proc.start()
        procs.append(proc)
    await asyncio.to_thread(ready.wait, 600 if phase else 120)
    if phase is not None:
        phase.start()
    if sampler is not None:
        sampler.start()
    cpu0, t0, io0 = cpu_seconds(server.pid), time.monotonic(), io_calls(server.pid)
    sw0, kernel0 = switches(server.pid), Kernel.of(server.pid)
    go.set()
    outcomes = [await asyncio.to_thread(out.get, True, 3600 if phase else 600) for _ in procs]
    wall = time.monotonic() - t0
    server_cpu = cpu_seconds(server.pid) - cpu0
    io, sw = io_calls(server.pid) - io0, switches(server.pid) - sw0
    kernel = Kernel.of(server.pid) - kernel0
    counts = await asyncio.to_thread(phase.stop) if phase is not None else None
    split = await asyncio.to_thread(sampler.stop) if sampler is not None else None
    for proc in procs:
        await asyncio.to_thread(proc.join, 30)
    errors = [e for o in outcomes for e in o[1]]
    return Result(
        server.name, "acme", sum(o[0] for o in outcomes), len(errors), wall, server_cpu,
        sum(o[3] for o in outcomes), sum(o[2] for o in outcomes), errors[0] if errors else None,
        io, sw, counts, kernel, split,
    )  # fmt: skip


# ---------------------------------------------------------------- the whole run


# The CA's variants: `running_acmekit`'s options for each name (`pg`: on a fresh
# PostgreSQL database at 127.0.0.1:5432, nonces in the database). Pebble is the peer.
ACMEKIT_VARIANTS: dict[str, dict[str, Any]] = {
    "acmekit": {},
    # linting before signing off: what the lint costs per certificate
    "acmekit-nolint": {"lint": False},
    # two `acmekit ct` logs on loopback (precertificate, two SCTs verified and embedded,
    # the final certificate submitted)
    "acmekit-ct": {"ct_logs": 2},
    # without the final certificate's best-effort add-chain (`[ct] submit_final = false`):
    # what that submission costs the CA
    "acmekit-ct-nofinal": {"ct_logs": 2, "ct_submit_final": False},
    # linting off: against `acmekit-nolint`, what CT costs the CA apart from the second lint
    "acmekit-ct-nolint": {"ct_logs": 2, "lint": False},
    "acmekit-pg": {"pg": True},
    "acmekit-nolint-pg": {"pg": True, "lint": False},
    # rate limits on, every bucket checked, taken and spent as in production, none sized
    # to refuse this load: against `acmekit-nolint` (`-pg`), what the limits cost
    "acmekit-nolint-limits": {"lint": False, "rate_limits": RAISED_LIMITS},
    "acmekit-nolint-limits-pg": {"pg": True, "lint": False, "rate_limits": RAISED_LIMITS},
}
# Stages printed as their own line: (name, with, without), each pair's CPU per
# certificate by medians.
STAGES = (
    ("rate limits on", "acmekit-nolint-limits", "acmekit-nolint"),
    ("rate limits on, PostgreSQL", "acmekit-nolint-limits-pg", "acmekit-nolint-pg"),
)
SERVERS = frozenset({*ACMEKIT_VARIANTS, "pebble"})


@contextmanager
def start_server(
    name: str, workdir: Path, dns_port: int, http_port: int, wrapper: Sequence[str] = ()
) -> Iterator[Server]:
    """Server `name` with a fresh state; `wrapper` is a command to run acmekit under
    (Pebble runs as it is)."""
    if name == "pebble":
        with _running_pebble(
            workdir, dns_port=dns_port, http_port=http_port, env=PEBBLE_ENV
        ) as server:
            yield server
        return
    options = dict(ACMEKIT_VARIANTS[name])
    with ExitStack() as stack:
        if options.pop("pg", False):
            options["db"] = stack.enter_context(fresh_database("postgresql", workdir, "unused"))
        yield stack.enter_context(
            running_acmekit(
                workdir,
                dns_port=dns_port,
                http_port=http_port,
                name=name,
                wrapper=wrapper,
                **options,
            )
        )


@dataclass(frozen=True)
class Plan:
    names: list[str]
    workers: int
    certs: int
    rounds: int
    clients: list[str] = field(default_factory=lambda: ["aiohttp"])
    callgrind: Path | None = None  # run the acmekit servers under callgrind, dumps here
    pin: bool = False  # the server alone on the last CPU, all else on the others
    burn: int = 0  # processes at nice 19 writing over memory (with pin: off the server's CPU)
    perf: Path | None = None  # sample every server's CPU time with perf, data files here

    def order(self, round_no: int) -> list[str]:
        """The servers of one round; the order flips every round so neither always goes first."""
        return self.names if round_no % 2 == 0 else self.names[::-1]


async def run_all(plan: Plan, workdir: Path) -> list[Result]:
    """Every round starts each server afresh and runs the same load against it."""
    tokens: dict[str, str] = {}
    http_port = free_port()
    results = []
    with multiprocessing.get_context("spawn").Manager() as manager:
        shared = manager.dict()
        async with http01_responder(http_port, tokens, shared):
            with running_challtestsrv(workdir) as dns:
                for round_no in range(plan.rounds):
                    for client in plan.clients:
                        for name in plan.order(round_no):
                            label = f"{name}-{client}-{round_no}"
                            own = workdir / label
                            own.mkdir()
                            out = plan.callgrind if name != "pebble" else None
                            wrap = wrapper(out, label) if out else ()
                            with start_server(name, own, dns.dns_port, http_port, wrap) as server:
                                phase = Phase(out, label, server.pid) if out else None
                                sampler = (
                                    _perf.Sampler(plan.perf, label, server.pid)
                                    if plan.perf
                                    else None
                                )
                                if plan.pin:
                                    pin_threads(server.pid, {SERVER_CPU})
                                if client == "acme":
                                    got = await measure_acme(
                                        server, plan.certs, shared, manager, phase, sampler
                                    )
                                else:
                                    pool = make_workers(plan.workers, plan.certs)
                                    got = await measure(server, pool, tokens, phase, sampler)
                                results.append(got)
                            print(
                                f"round {round_no + 1} {client} {name}: done",
                                file=sys.stderr,
                                flush=True,
                            )
    return results


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (threads it starts later inherit the mask of the
    thread that starts them)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), cpus)


def _row(label: str, r: Result) -> str:
    per = (lambda x: x / r.certs) if r.certs else (lambda x: float("nan"))
    return (
        f"{label:<26} {r.certs:>6} {r.failed:>6} {r.wall:>7.2f} {r.per_second:>8.1f} "
        f"{r.cpu_ms:>11.2f} {r.cpu_us_per_request:>10.0f} {per(1000 * r.client_cpu):>11.2f} "
        f"{per(r.requests):>9.2f} {r.syscalls / r.requests if r.requests else 0:>9.1f} "
        f"{r.switches / r.requests if r.requests else 0:>8.1f}"
    )


def result_row(label: str, r: Result) -> str:
    return _row(label, r)


def kernel_row(label: str, r: Result) -> str:
    requests, k = max(r.requests, 1), r.kernel
    share = k.system / r.server_cpu if r.server_cpu else float("nan")
    return (
        f"{label:<26} {share:>13.0%} {k.faults / requests:>10.1f} {k.migrations / requests:>13.2f}"
    )


def instructions_row(label: str, r: Result) -> str:
    assert r.counts is not None
    certs, requests = max(r.certs, 1), max(r.requests, 1)
    return (
        f"{label:<26} {r.counts.instructions / certs:>12,.0f} "
        f"{r.counts.instructions / requests:>11,.0f} {r.requests / certs:>9.2f} "
        f"{r.counts.calls['accept4'] / certs:>12.3f} {r.counts.calls['SSL_new'] / certs:>14.3f}"
    )


def split_row(label: str, r: Result) -> str:
    assert r.split is not None
    return f"{label:<26} " + " ".join(f"{r.split[g] * r.cpu_ms:>11.2f}" for g in _perf.GROUP_NAMES)


def median_result(results: list[Result]) -> Result:
    """The round with the median server CPU per certificate."""
    ranked = sorted(results, key=lambda r: r.cpu_ms)
    return ranked[(len(ranked) - 1) // 2]


def _worst_ratio(results: list[Result], ours: str, base: str) -> float:
    """The highest CPU/cert of `ours` over the lowest of `base`, under each generator
    (their loads differ), the worst of the generators."""
    worst = 0.0
    for client in {r.client for r in results}:
        mine = [r.cpu_ms for r in results if r.client == client and r.server == ours]
        theirs = [r.cpu_ms for r in results if r.client == client and r.server == base]
        if mine and theirs:
            worst = max(worst, max(mine) / min(theirs))
    return worst


def _generator_gap(results: list[Result], server: str) -> float:
    """The most CPU/cert of `server` under one generator over its least under another:
    what a pair across generators reads when nothing differs but the generator (the
    acme generator's client processes churn the caches the CA works in). A pair of CT
    on and off across generators carries this as well as CT's own cost."""
    by_client: dict[str, list[float]] = {}
    for r in results:
        if r.server == server:
            by_client.setdefault(r.client, []).append(r.cpu_ms)
    gaps = [max(a) / min(b) for x, a in by_client.items() for y, b in by_client.items() if x != y]
    return max(gaps) if gaps else float("nan")


def _worst_round(results: list[Result], ours: str, base: str) -> float:
    """The highest ratio of `ours` to `base` run under the same generator in the same
    round (one after the other, so under much the same load from the rest of the machine)."""
    rounds: dict[tuple[str, int], dict[str, float]] = {}
    count: dict[tuple[str, str], int] = {}
    for r in results:
        n = count[(r.client, r.server)] = count.get((r.client, r.server), 0) + 1
        rounds.setdefault((r.client, n), {})[r.server] = r.cpu_ms
    pairs = [v[ours] / v[base] for v in rounds.values() if ours in v and base in v]
    return max(pairs) if pairs else float("nan")


def _stages(results: list[Result], medians: dict[str, Result], prefix: str) -> None:
    """Each of `STAGES` whose two servers ran: its added CPU per certificate (medians),
    and its ratio in the least flattering round."""
    for stage, ours, base in STAGES:
        if {ours, base} <= medians.keys():
            w, n = medians[ours], medians[base]
            print(
                f"{prefix}{stage}: server CPU {w.cpu_ms - n.cpu_ms:+.2f} ms/cert "
                f"({w.cpu_ms:.2f} with, {n.cpu_ms:.2f} without; x{w.cpu_ms / n.cpu_ms:.2f}; "
                f"worst round x{_worst_round(results, ours, base):.2f}), "
                f"context switches/cert {_per_cert(w.switches, w)} and {_per_cert(n.switches, n)}"
            )


def _per_cert(count: int, r: Result) -> str:
    return f"{count / r.certs:.1f}" if r.certs else "-"


def report(results: list[Result], plan: Plan) -> None:
    cores = len(os.sched_getaffinity(0)) + (1 if plan.pin else 0)  # --pin took one
    print(f"\nCA server benchmark: {plan.certs} distinct-name certificates per server, generator")
    print(f"and round, {plan.rounds} round(s), http-01, P-256 CSRs. Generators: aiohttp")
    print(
        f"({plan.workers} workers, one session, pooled nonces, polls every "
        f"{POLL_INTERVAL * 1000:.0f} ms) and acme"
    )
    print(
        f"(certbot's library: {ACME_PROCESSES} processes, a session and nonces each, "
        "polls 10 ms doubling"
    )
    print(
        f"to 250 ms). Generators, servers and the DNS server share {cores} CPU cores, so certs/s is"
    )
    print(
        "bounded by the machine; server CPU is utime+stime from /proc of the server "
        "and its children."
    )
    print("Pebble: " + " ".join(f"{k}={v}" for k, v in PEBBLE_ENV.items()))
    if plan.pin:
        others = sorted(os.sched_getaffinity(0))
        print(f"Pinned: each server on CPU {SERVER_CPU}, everything else on CPU(s) {others}")
    if plan.burn:
        print(f"{plan.burn} process(es) at nice 19 writing over 32 MB in a loop throughout")
    print()
    head = f"{'generator/server':<26} {'certs':>6} {'failed':>6} {'wall s':>7} {'certs/s':>8} "
    print(
        head + f"{'CPU ms/cert':>11} {'CPU us/req':>10} {'client ms/c':>11} {'req/cert':>9} "
        f"{'r+w sys/req':>9} {'ctxsw/req':>8}"
    )
    per_round = len(plan.names) * len(plan.clients)
    for i, r in enumerate(results):
        print(result_row(f"{r.client}/{r.server} #{i // per_round + 1}", r))
    medians = {n: median_result([r for r in results if r.server == n]) for n in plan.names}
    if plan.rounds > 1:
        for name, r in medians.items():
            print(result_row(f"{name} median", r) + "  (round of median CPU)")
    if {"acmekit", "pebble"} <= medians.keys():
        a, p = medians["acmekit"], medians["pebble"]
        print(
            f"\nratio acmekit/pebble: certs/s {a.per_second / p.per_second:.2f}, "
            f"server CPU ms/cert {a.cpu_ms / p.cpu_ms:.2f} (target: <= 1.00)"
        )
    if {"acmekit", "acmekit-nolint"} <= medians.keys():
        a, n = medians["acmekit"], medians["acmekit-nolint"]
        print(
            f"lint before signing: server CPU {a.cpu_ms - n.cpu_ms:+.2f} ms/cert "
            f"({a.cpu_ms:.2f} with, {n.cpu_ms:.2f} without)"
        )
    if {"acmekit", "acmekit-ct"} <= medians.keys():
        a, c = medians["acmekit"], medians["acmekit-ct"]
        print(
            f"CT with two logs: server CPU {c.cpu_ms - a.cpu_ms:+.2f} ms/cert "
            f"({c.cpu_ms:.2f} with, {a.cpu_ms:.2f} without; x{c.cpu_ms / a.cpu_ms:.2f}, "
            "target: <= x1.50; the logs' own CPU not counted)"
        )
        ct_cpu = [x.cpu_ms for x in results if x.server == "acmekit-ct"]
        plain_cpu = [x.cpu_ms for x in results if x.server == "acmekit"]
        print(
            "CT with two logs, least flattering pair (most CPU with, least without): "
            f"x{max(ct_cpu) / min(plain_cpu):.2f}; under the same generator "
            f"x{_worst_ratio(results, 'acmekit-ct', 'acmekit'):.2f}; "
            f"worst round x{_worst_round(results, 'acmekit-ct', 'acmekit'):.2f}"
        )
        print(
            "  the same pairing across generators with CT off on both sides "
            f"(acmekit against itself): x{_generator_gap(results, 'acmekit'):.2f}"
        )
        if "pebble" in medians:
            p = medians["pebble"]
            pebble_cpu = [x.cpu_ms for x in results if x.server == "pebble"]
            print(
                f"acmekit-ct/pebble: server CPU ms/cert {c.cpu_ms / p.cpu_ms:.2f} (medians), "
                f"least flattering pair {max(ct_cpu) / min(pebble_cpu):.2f}"
            )
    if {"acmekit-nolint", "acmekit-ct-nolint"} <= medians.keys():
        n, c = medians["acmekit-nolint"], medians["acmekit-ct-nolint"]
        print(
            f"CT with two logs, lint off: server CPU {c.cpu_ms - n.cpu_ms:+.2f} ms/cert "
            f"({c.cpu_ms:.2f} with, {n.cpu_ms:.2f} without; x{c.cpu_ms / n.cpu_ms:.2f}; "
            f"least flattering x{_worst_ratio(results, 'acmekit-ct-nolint', 'acmekit-nolint'):.2f})"
        )
    _stages(results, medians, "")
    for client in plan.clients:
        mine = [r for r in results if r.client == client]
        medians = {n: median_result([r for r in mine if r.server == n]) for n in plan.names}
        if plan.rounds > 1:
            for name, r in medians.items():
                print(result_row(f"{client}/{name} median", r))
        for ours in ("acmekit", "acmekit-nolint", "acmekit-pg", "acmekit-nolint-pg"):
            if {ours, "pebble"} <= medians.keys():
                a, p = medians[ours], medians["pebble"]
                worst = max(x.cpu_ms for x in mine if x.server == ours) / min(
                    x.cpu_ms for x in mine if x.server == "pebble"
                )
                print(
                    f"{client}: ratio {ours}/pebble: certs/s {a.per_second / p.per_second:.2f}, "
                    f"server CPU ms/cert {a.cpu_ms / p.cpu_ms:.2f} (least flattering pair "
                    f"{worst:.2f}; target <= 0.50), CPU/request "
                    f"{a.cpu_us_per_request / p.cpu_us_per_request:.2f}"
                )
        if {"acmekit", "acmekit-nolint"} <= medians.keys():
            a, n = medians["acmekit"], medians["acmekit-nolint"]
            print(
                f"{client}: lint before signing: server CPU {a.cpu_ms - n.cpu_ms:+.2f} ms/cert "
                f"({a.cpu_ms:.2f} with, {n.cpu_ms:.2f} without)"
            )
        _stages(mine, medians, f"{client}: ")
    print("\nthe server's kernel side (its own process; not in instruction counts):")
    print(
        f"{'generator/server':<26} {'sys CPU share':>13} {'faults/req':>10} {'CPU moves/req':>13}"
    )
    for r in results:
        print(kernel_row(f"{r.client}/{r.server}", r))
    sampled = [r for r in results if r.split is not None]
    if sampled:
        print("\nwhere the server's CPU time went (perf, by shared object), ms per certificate:")
        print(f"{'generator/server':<26} " + " ".join(f"{g:>11}" for g in _perf.GROUP_NAMES))
        for r in sampled:
            print(split_row(f"{r.client}/{r.server}", r))
    counted = [r for r in results if r.counts is not None]
    if counted:
        print("\nunder callgrind (instructions do not move with load; CPU times above do):")
        print(
            f"{'generator/server':<26} {'Ir/cert':>12} {'Ir/request':>11} {'req/cert':>9} "
            f"{'accepts/cert':>12} {'TLS conns/cert':>14}"
        )
        for r in counted:
            print(instructions_row(f"{r.client}/{r.server}", r))
    for r in results:
        if r.first_error:
            print(f"{r.client}/{r.server}: {r.failed} failed; first: {r.first_error}")


def parse_args(argv: list[str] | None = None) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8, help="concurrent workers [8]")
    parser.add_argument(
        "--certs", type=int, default=200, help="certificates per server and round [200]"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server [3]")
    parser.add_argument(
        "--servers", default="acmekit,pebble", help="comma-separated, run in this order"
    )
    parser.add_argument(
        "--clients", default="aiohttp,acme", help="load generators: aiohttp, acme [both]"
    )
    parser.add_argument(
        "--callgrind",
        type=Path,
        metavar="DIR",
        help="run the acmekit servers under callgrind (dumps in DIR) and count their "
        "instructions over the measured phase (use few certificates: ~50x slower)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="each server alone on the last CPU, the generators, the http-01 responder "
        "and the DNS server on the others: does sharing cores with the clients move the "
        "server's CPU?",
    )
    parser.add_argument(
        "--burn",
        type=int,
        default=0,
        metavar="N",
        help="N processes at nice 19 that write over 32 MB in a loop (with --pin, off the "
        "server's CPU): does a server's CPU per request move when its caches are cold?",
    )
    parser.add_argument(
        "--perf",
        type=Path,
        metavar="DIR",
        help="sample each server's CPU time with perf (data files in DIR) and split its "
        "CPU per certificate by shared object: the interpreter, crypto, kernel, SQLite...",
    )
    args = parser.parse_args(argv)
    names = [n for n in args.servers.split(",") if n]
    clients = [c for c in args.clients.split(",") if c]
    unknown = set(names) - SERVERS | set(clients) - {"aiohttp", "acme"}
    if unknown or not names or min(args.workers, args.certs, args.rounds) < 1:
        parser.error(f"bad arguments (unknown servers: {sorted(unknown)})")
    if args.callgrind is not None:
        args.callgrind.mkdir(parents=True, exist_ok=True)
        args.callgrind = args.callgrind.resolve()
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin needs two CPUs")
    if args.perf is not None:
        if not _perf.available():
            parser.error("--perf needs perf (Debian: linux-perf)")
        args.perf.mkdir(parents=True, exist_ok=True)
        args.perf = args.perf.resolve()
    return Plan(
        names, args.workers, args.certs, args.rounds, clients, args.callgrind, args.pin,
        args.burn, args.perf,
    )  # fmt: skip


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the load generator should spend as little CPU as it can."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


BURN_BYTES = 32 << 20  # as large as the last-level cache
LINE = 64  # bytes in a cache line


def burn() -> None:
    """At the lowest priority, write over BURN_BYTES a cache line at a time, for ever:
    the cores' idle moments are filled and whatever ran before finds its caches cold, as
    CPU-bound clients leave them (without taking CPU the server or generators want)."""
    os.nice(19)
    buf = bytearray(BURN_BYTES)
    value = 0
    while True:
        value ^= 1
        buf[::LINE] = bytes([value]) * (BURN_BYTES // LINE)


@contextmanager
def burning(count: int) -> Iterator[None]:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=burn, daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(10)


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    if plan.pin:  # before any helper process starts: they inherit this mask
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {SERVER_CPU})
    with (
        tempfile.TemporaryDirectory(prefix="acmekit-bench-") as tmp,
        burning(plan.burn),
        asyncio.Runner(loop_factory=loop_factory()) as runner,
    ):
        results = runner.run(run_all(plan, Path(tmp)))
    report(results, plan)
    return 0 if all(r.failed == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Client benchmark: acmekit next to certbot, lego and certbot's `acme` library, against
one Pebble in the same run.

What it measures:

(a) One `certonly --standalone` (http-01, one name, P-256 key) as a user runs it: the
    wall time of the whole command, for acmekit, Debian's certbot and Debian's lego, each
    `--runs` times with a fresh config dir and a distinct name, runs interleaved. The
    median, and the children's CPU (utime+stime from getrusage) of that run.
(b) Certificates per second for `--certs` distinct names, `--concurrency` at a time, through
    acmekit's library (one `Client`, `issue` with a `StandaloneHttpSolver`, one asyncio
    loop) and through the PyPI `acme` library (`ClientV2`, one `ClientNetwork` per worker
    thread, the shared account, `acme.standalone.HTTP01Server` in a thread, as certbot uses
    them). Client CPU is `time.process_time()` of this process around the measured phase:
    every thread is included, the http-01 responder too. Pebble's CPU (from /proc) is shown
    for context. Keys and CSRs are made before the measured phase; account registration
    and the responders' start are outside it.

Pebble runs with PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0 and PEBBLE_AUTHZREUSE=0;
`pebble-challtestsrv` answers every name with 127.0.0.1 for its VA. A comparison whose peer
is missing (no /usr/bin/certbot, /usr/bin/lego, or no importable `acme`) is skipped with a
message.

Run: `python bench/client.py [--runs 3] [--certs 200] [--concurrency 16]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from _common import (
    Server,
    certbot_dirs,
    cpu_seconds,
    free_port,
    running_challtestsrv,
    running_pebble,
)
from acmekit.client import Client
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.protocol.messages import ChallengeType

PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
CERTBOT = "/usr/bin/certbot"
LEGO = "/usr/bin/lego"
EMAIL = "bench@client.test"
COMMAND_TIMEOUT = 120.0
CERT_DEADLINE = 90.0  # seconds one library issuance may take


@dataclass(frozen=True)
class Plan:
    runs: int
    certs: int
    concurrency: int


@dataclass(frozen=True)
class Env:
    pebble: Server
    http_port: int
    workdir: Path


# ---------------------------------------------------------------- (a) one certonly


@dataclass
class CliRuns:
    client: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def acmekit_argv(env: Env, home: Path, name: str) -> list[str]:
    exe = Path(sys.executable).with_name("acmekit")
    return [
        str(exe), "certonly", "-n", "--agree-tos", "-m", EMAIL,
        "--server", env.pebble.directory_url, *certbot_dirs(home),
        "--standalone", "--http-01-port", str(env.http_port), "--http-01-address", "127.0.0.1",
        "-d", name,
    ]  # fmt: skip


def certbot_argv(env: Env, home: Path, name: str) -> list[str]:
    return [
        CERTBOT, "certonly", "--non-interactive", "--agree-tos", "-m", EMAIL,
        "--server", env.pebble.directory_url, *certbot_dirs(home), "--key-type", "ecdsa",
        "--standalone", "--http-01-port", str(env.http_port), "--http-01-address", "127.0.0.1",
        "-d", name,
    ]  # fmt: skip


def lego_argv(env: Env, home: Path, name: str) -> list[str]:
    return [
        LEGO, "--server", env.pebble.directory_url, "--accept-tos", "--email", EMAIL,
        "--path", str(home), "--key-type", "ec256", "--domains", name,
        "--http", "--http.port", f"127.0.0.1:{env.http_port}", "run",
    ]  # fmt: skip


CLIENTS: dict[str, Callable[[Env, Path, str], list[str]]] = {
    "acmekit": acmekit_argv,
    "certbot": certbot_argv,
    "lego": lego_argv,
}


def issued_file(client: str, home: Path, name: str) -> Path:
    """Where each client leaves the certificate: proof that a run really issued one."""
    if client == "lego":
        return home / "certificates" / f"{name}.crt"
    return home / "etc" / "live" / name / "fullchain.pem"


def available_clients() -> list[str]:
    found = ["acmekit"]
    for name, path in (("certbot", CERTBOT), ("lego", LEGO)):
        if shutil.which(path):
            found.append(name)
        else:
            print(f"{path} not found: skipping {name}", file=sys.stderr)
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_command(env: Env, client: str, run: int, into: CliRuns) -> None:
    home = env.workdir / f"{client}-{run}"
    name = f"{client}-{run}.cli.bench.test"
    argv = CLIENTS[client](env, home, name)
    penv = {
        **os.environ,
        "REQUESTS_CA_BUNDLE": str(env.pebble.root_path),
        "LEGO_CA_CERTIFICATES": str(env.pebble.root_path),
    }
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=penv, timeout=COMMAND_TIMEOUT)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0 or not issued_file(client, home, name).is_file():
        detail = (done.stderr or done.stdout).strip()[-400:]
        into.failures.append(f"{client} run {run} (exit {done.returncode}): {detail}")
        return
    into.walls.append(wall)
    into.cpus.append(cpu)


def measure_cli(env: Env, plan: Plan, clients: Sequence[str]) -> list[CliRuns]:
    results = {c: CliRuns(c) for c in clients}
    for run in range(plan.runs):
        rotated = [*clients[run % len(clients) :], *clients[: run % len(clients)]]
        for client in rotated:
            run_command(env, client, run, results[client])
        print(f"certonly run {run + 1}/{plan.runs}: done", file=sys.stderr, flush=True)
    return list(results.values())


# ---------------------------------------------------------------- (b) library throughput


@dataclass(frozen=True)
class Phase:
    library: str
    certs: int
    failed: int
    wall: float
    client_cpu: float
    pebble_cpu: float
    first_error: str | None = None

    @property
    def per_second(self) -> float:
        return self.certs / self.wall if self.wall else 0.0

    def ms_per_cert(self, seconds: float) -> float:
        return 1000 * seconds / self.certs if self.certs else float("nan")


def make_csrs(prefix: str, count: int) -> list[tuple[str, x509.CertificateSigningRequest]]:
    out = []
    for i in range(count):
        name = f"{prefix}-{i}.lib.bench.test"
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        out.append((name, csr))
    return out


class Meter:
    """Wall, this process's CPU (all threads) and Pebble's CPU across a `with` block."""

    def __init__(self, pebble_pid: int) -> None:
        self.pid = pebble_pid
        self.wall = self.cpu = self.pebble = 0.0

    def __enter__(self) -> Meter:
        self._t, self._c, self._p = time.perf_counter(), time.process_time(), cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t
        self.cpu = time.process_time() - self._c
        self.pebble = cpu_seconds(self.pid) - self._p


async def acmekit_phase(env: Env, plan: Plan, csrs: list[tuple[str, Any]]) -> Phase:
    ders = [(n, c.public_bytes(serialization.Encoding.DER)) for n, c in csrs]
    key = ec.generate_private_key(ec.SECP256R1())
    errors: list[str] = []
    async with (
        Client(env.pebble.directory_url, key, ca_bundle=str(env.pebble.root_path)) as client,
        StandaloneHttpSolver("127.0.0.1", env.http_port) as solver,
    ):
        await client.register([f"mailto:{EMAIL}"], agree_tos=True)
        limit = asyncio.Semaphore(plan.concurrency)

        async def one(name: str, der: bytes) -> None:
            async with limit:
                try:
                    await client.issue([name], {ChallengeType.HTTP_01: solver}, der)
                except Exception as exc:
                    errors.append(f"{name}: {type(exc).__name__}: {exc}")

        with Meter(env.pebble.pid) as m:
            await asyncio.gather(*(one(n, d) for n, d in ders))
    return _phase("acmekit", len(ders), errors, m)


def _phase(library: str, total: int, errors: list[str], m: Meter) -> Phase:
    first = errors[0] if errors else None
    return Phase(library, total - len(errors), len(errors), m.wall, m.cpu, m.pebble, first)


def acme_phase(env: Env, plan: Plan, csrs: list[tuple[str, Any]]) -> Phase:
    """certbot's `acme` library the way certbot drives it, one worker thread per order."""
    import josepy as jose
    from acme import challenges, messages, standalone
    from acme.client import ClientNetwork, ClientV2

    pems = [(n, c.public_bytes(serialization.Encoding.PEM)) for n, c in csrs]
    account_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    verify = str(env.pebble.root_path)

    def new_client(account: Any = None) -> Any:
        net = ClientNetwork(account_key, account=account, alg=jose.ES256, verify_ssl=verify)
        return ClientV2(ClientV2.get_directory(env.pebble.directory_url, net), net)

    first = new_client()
    registration = messages.NewRegistration.from_data(email=EMAIL, terms_of_service_agreed=True)
    account = first.new_account(registration)
    pool: queue.Queue[Any] = queue.Queue()
    for _ in range(plan.concurrency):
        pool.put(new_client(account))
    resources: set[Any] = set()
    server = standalone.HTTP01Server(("127.0.0.1", env.http_port), resources)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    errors: list[str] = []

    def one(item: tuple[str, bytes]) -> None:
        client = pool.get()
        published: list[Any] = []
        try:
            order = client.new_order(item[1])
            for authz in order.authorizations:
                challb = next(
                    c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)
                )
                response, validation = challb.response_and_validation(account_key)
                res = standalone.HTTP01RequestHandler.HTTP01Resource(
                    chall=challb.chall, response=response, validation=validation
                )
                resources.add(res)
                published.append(res)
                client.answer_challenge(challb, response)
            client.poll_and_finalize(order, datetime.now() + timedelta(seconds=CERT_DEADLINE))
        except Exception as exc:
            errors.append(f"{item[0]}: {type(exc).__name__}: {exc}")
        finally:
            for res in published:
                resources.discard(res)
            pool.put(client)

    try:
        with Meter(env.pebble.pid) as m, ThreadPoolExecutor(plan.concurrency) as workers:
            list(workers.map(one, pems))
    finally:
        server.shutdown()
        server.server_close()
        serving.join()
    return _phase("acme (PyPI)", len(pems), errors, m)


def acme_importable() -> bool:
    try:
        import acme.client  # noqa: F401
        import josepy  # noqa: F401
    except ImportError:
        print(
            "the PyPI `acme` library is not importable here (pip install acme): "
            "skipping the library comparison with it",
            file=sys.stderr,
        )
        return False
    return True


def measure_libraries(env: Env, plan: Plan) -> list[Phase]:
    phases = [asyncio.run(acmekit_phase(env, plan, make_csrs("k", plan.certs)))]
    print("library phase acmekit: done", file=sys.stderr, flush=True)
    if acme_importable():
        phases.append(acme_phase(env, plan, make_csrs("a", plan.certs)))
        print("library phase acme: done", file=sys.stderr, flush=True)
    return phases


# ---------------------------------------------------------------- report


def report_cli(results: list[CliRuns], plan: Plan) -> None:
    print(f"\n(a) one `certonly --standalone` (http-01, P-256), {plan.runs} run(s) per client,")
    print("    fresh config dir and distinct name per run; wall time of the whole command\n")
    print(f"{'client':<10} {'ok':>3} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7}")
    medians: dict[str, float] = {}
    for r in results:
        if not r.walls:
            print(f"{r.client:<10} {0:>3}  (every run failed)")
            continue
        medians[r.client] = statistics.median(r.walls)
        cpu = statistics.median(r.cpus)
        print(
            f"{r.client:<10} {len(r.walls):>3} {medians[r.client]:>9.2f} {min(r.walls):>7.2f} "
            f"{max(r.walls):>7.2f} {cpu:>7.2f}"
        )
    if "acmekit" in medians:
        base = medians["acmekit"]
        for other in (c for c in medians if c != "acmekit"):
            print(f"wall ratio {other}/acmekit: {medians[other] / base:.2f}")
        fastest = min(medians, key=lambda c: medians[c])
        print(f"fastest: {fastest}; acmekit under a second: {'yes' if base < 1.0 else 'no'}")
    for r in results:
        for failure in r.failures:
            print(f"failed: {failure}")


def report_libraries(phases: list[Phase], plan: Plan) -> None:
    print(f"\n(b) {plan.certs} distinct names, {plan.concurrency} at a time, through a library;")
    print("    client CPU is this process (all threads) around the measured phase\n")
    head = f"{'library':<12} {'certs':>6} {'failed':>6} {'wall s':>7} {'certs/s':>8} "
    print(head + f"{'client CPU ms/cert':>19} {'pebble CPU ms/cert':>19}")
    for p in phases:
        print(
            f"{p.library:<12} {p.certs:>6} {p.failed:>6} {p.wall:>7.2f} {p.per_second:>8.1f} "
            f"{p.ms_per_cert(p.client_cpu):>19.2f} {p.ms_per_cert(p.pebble_cpu):>19.2f}"
        )
    if len(phases) == 2 and all(p.certs for p in phases):
        k, a = phases
        print(
            f"ratio acmekit/acme: certs/s {k.per_second / a.per_second:.2f}, client CPU "
            f"ms/cert {k.ms_per_cert(k.client_cpu) / a.ms_per_cert(a.client_cpu):.2f}"
        )
    for p in phases:
        if p.first_error:
            print(f"{p.library}: {p.failed} failed; first: {p.first_error}")


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="certonly runs per client [3]")
    parser.add_argument("--certs", type=int, default=200, help="names per library [200]")
    parser.add_argument("--concurrency", type=int, default=16, help="orders at a time [16]")
    args = parser.parse_args(argv)
    if min(args.runs, args.certs, args.concurrency) < 1:
        parser.error("--runs, --certs and --concurrency must be at least 1")
    return Plan(args.runs, args.certs, args.concurrency)


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acmekit-bench-client-") as tmp:
        workdir = Path(tmp)
        http_port = free_port()
        with (
            running_challtestsrv(workdir) as dns,
            running_pebble(
                workdir, dns_port=dns.dns_port, http_port=http_port, env=PEBBLE_ENV
            ) as p,
        ):
            env = Env(p, http_port, workdir)
            cli = measure_cli(env, plan, available_clients())
            libraries = measure_libraries(env, plan)
    print("\nPebble: " + " ".join(f"{k}={v}" for k, v in PEBBLE_ENV.items()))
    print(f"CPU cores available: {len(os.sched_getaffinity(0))}")
    report_cli(cli, plan)
    report_libraries(libraries, plan)
    failed = any(r.failures for r in cli) or any(p.failed for p in libraries)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

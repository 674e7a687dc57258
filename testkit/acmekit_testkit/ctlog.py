"""Certificates for a CT log to take, issued by an acmekit CA hierarchy, and a running
`acmekit ct` process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.ct.app import CtApp
from acmekit.ct.service import CtConfig, assemble, bind, log_url, write_log_list
from acmekit.server.ca import Issuer, load_or_create_issuer
from acmekit_testkit.http1serve import http1_serving_on_thread
from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import logged_process, wait_for_lines


def ca_hierarchy(state_dir: Path) -> Issuer:
    """An acmekit CA hierarchy (root, intermediate) in `state_dir`, as `acmekit server`
    makes it; `state_dir/root.pem` is what a log accepts."""
    return load_or_create_issuer(state_dir, datetime.now(UTC))


def leaf_certificate(
    issuer: Issuer,
    name: str,
    *,
    precert: bool = False,
    not_after: datetime | None = None,
    signer: Issuer | None = None,
) -> x509.Certificate:
    """A subscriber certificate for `name` from the intermediate (with the CT poison
    when `precert`). `signer` signs with another hierarchy's key under the same names."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.intermediate_cert.subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(not_after or now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if precert:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    sign_key = (signer or issuer).intermediate_key
    assert isinstance(sign_key, ec.EllipticCurvePrivateKey)
    return builder.sign(sign_key, hashes.SHA256())


def self_signed(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def chain_json(certs: Sequence[x509.Certificate]) -> dict[str, list[str]]:
    """The add-chain / add-pre-chain request body."""
    return {"chain": [base64.b64encode(der(c)).decode() for c in certs]}


@dataclass(frozen=True)
class RunningLog:
    url: str  # ends in "/"
    log_id: str
    log_list: Path
    state_dir: Path
    output: Path
    process: subprocess.Popen[bytes]


def ct_log_argv(
    state_dir: Path,
    roots: Path,
    *,
    db: str | None = None,
    mmd: float = 1.0,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of `acmekit ct` on a free loopback port."""
    return [
        sys.executable,
        "-m",
        "acmekit",
        "ct",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--state-dir",
        str(state_dir),
        "--roots",
        str(roots),
        "--mmd",
        str(mmd),
        *(["--db", db] if db else []),
        *extra,
    ]


def started_log(proc: subprocess.Popen[bytes], state_dir: Path, output: Path) -> RunningLog:
    """Wait until `acmekit ct` prints where it is; what it printed."""
    lines = wait_for_lines(proc, output, ["ct log:", "log id:", "log list:"], "acmekit ct")
    return RunningLog(
        lines["ct log:"], lines["log id:"], Path(lines["log list:"]), state_dir, output, proc
    )


@contextmanager
def running_ct_log(
    state_dir: Path,
    roots: Path,
    *,
    db: str | None = None,
    mmd: float = 1.0,
    extra: Sequence[str] = (),
    output: Path | None = None,
) -> Iterator[RunningLog]:
    """`acmekit ct` on a free loopback port until the block ends (stopped by its PID)."""
    output = output or state_dir.parent / f"{state_dir.name}.log"
    argv = ct_log_argv(state_dir, roots, db=db, mmd=mmd, extra=extra)
    with logged_process(argv, output) as proc:
        yield started_log(proc, state_dir, output)


@dataclass
class LogInLoop:
    """An `acmekit ct` app served on a loopback port from the test's own event loop."""

    app: CtApp
    url: str
    log_list: Path
    server: uvicorn.Server
    task: asyncio.Task[None] = field(repr=False)

    async def stop(self) -> None:
        """Close the listener: the log is down from here on."""
        self.server.should_exit = True
        await self.task


@asynccontextmanager
async def ct_log_in_loop(
    state_dir: Path,
    roots: Path,
    *,
    operator: str | None = None,
    wrap: Callable[[CtApp], Any] | None = None,
) -> AsyncIterator[LogInLoop]:
    """A CT log in-process (component tests): the real app and HTTP on 127.0.0.1, its
    log list written to `state_dir/loglist.json`. `wrap` puts ASGI middleware in front
    (a misbehaving log)."""
    config = CtConfig(state_dir=state_dir, listen="127.0.0.1:0", roots=roots, operator=operator)
    app = assemble(config)
    sock = bind(config.listen)
    url = log_url(sock)
    path = write_log_list(app, config, url)
    served = wrap(app) if wrap is not None else app
    server = uvicorn.Server(uvicorn.Config(served, lifespan="off", log_level="warning"))
    # The socket listens already: connections wait in its backlog until uvicorn runs.
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    running = LogInLoop(app, url, path, server, task)
    try:
        yield running
    finally:
        if not task.done():
            await running.stop()
        sock.close()
        app.log.store.close()


@contextmanager
def served_log(app: CtApp) -> Iterator[str]:
    """`app` on 127.0.0.1 behind the project's HTTP/1.1 server, its event loop on a
    thread of its own as in `acmekit ct`'s process; the log's base URL."""
    with http1_serving_on_thread(app) as port:
        yield f"http://127.0.0.1:{port}/ct/v1/"


@contextmanager
def served_one_entry_log(base: Path, name: str) -> Iterator[tuple[int, str]]:
    """A log of one sequenced entry (a leaf for `name`) served on 127.0.0.1 from `base`:
    its port, and its issuer's SHA-256 in hex (the issuer tile's name)."""
    issuer = ca_hierarchy(base / "ca")
    config = CtConfig(state_dir=base / "log", roots=Path(base / "ca" / "root.pem"))
    app: CtApp = assemble(config)
    try:
        inter = issuer.intermediate_cert
        app.log.add_chain([der(leaf_certificate(issuer, name)), der(inter)], False)
        assert app.log.sequence_once() == 1
        with served_log(app) as url:
            port = int(url.split(":")[2].split("/")[0])
            yield port, hashlib.sha256(der(inter)).hexdigest()
    finally:
        app.log.store.close()


def json_call(
    url: str, body: bytes | None = None, method: str | None = None
) -> tuple[int, dict[str, Any]]:
    """One request to a log (a POST when `body` is given): its status and JSON document,
    an error's included."""
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())

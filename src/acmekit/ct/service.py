"""Assemble and run `acmekit ct`: state directory, key, store, sequencer, HTTP listener,
and the log list it writes for CAs, clients and monitors (`DIR/loglist.json`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from acmekit.ct.app import DRAIN_LIMIT, CtApp
from acmekit.ct.log import CtLog, LogSettings, load_or_create_key, on_daemon_thread
from acmekit.ct.store import CtStore
from acmekit.ct.tiles import TileReader
from acmekit.files import atomic_write
from acmekit.hostport import parse_host_port
from acmekit.http1 import Http1Server, ListenerLimits, serve_until, stop_on_signals
from acmekit.protocol.ct import LogList, b64

log = logging.getLogger(__name__)

LOG_LIST = "loglist.json"
DB_FILE = "ct.db"
# Seconds the store's close has at shutdown, after the listener's own bound: a writer
# stuck in the database (a half-open PostgreSQL connection, a lock wait) is left then,
# and the process exits without it (its batch uncommitted, its submitters unanswered).
CLOSE_GRACE = 5.0


@dataclass(frozen=True)
class CtConfig:
    state_dir: Path
    listen: str = "127.0.0.1:6962"
    db: str | None = None
    roots: Path | None = None
    operator: str | None = None
    not_after_start: datetime | None = None
    not_after_end: datetime | None = None
    mmd: float = 60.0
    # The log's URL as clients know it (the log list's `url`, the checkpoint's origin);
    # None: the listener's. Processes of one log each listen on an address of their own
    # but are one log: static-ct-api's origin names the log in every checkpoint.
    url: str | None = None
    # HTTPS on the listener: a PEM certificate chain (the server's first) and its key
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.state_dir / DB_FILE}"


def load_roots(path: Path | None, state_dir: Path) -> tuple[x509.Certificate, ...]:
    """The accepted roots: the PEM bundle given, else `DIR/roots.pem` if present."""
    path = path or (state_dir / "roots.pem")
    if not path.exists():
        raise ValueError(f"no accepted roots: {path} does not exist (give --roots FILE.pem)")
    try:
        roots = tuple(x509.load_pem_x509_certificates(path.read_bytes()))
    except ValueError as exc:
        raise ValueError(f"{path}: not a PEM certificate bundle: {exc}") from None
    return roots


def assemble(config: CtConfig) -> CtApp:
    """The app, its log and store; tests drive it in-process."""
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = load_or_create_key(config.state_dir)
    settings = LogSettings(
        roots=load_roots(config.roots, config.state_dir),
        mmd=config.mmd,
        not_after_start=config.not_after_start,
        not_after_end=config.not_after_end,
    )
    ctlog = CtLog(CtStore.from_url(config.db_url), key, settings)
    return CtApp(ctlog, TileReader(ctlog))


def bind(listen: str) -> socket.socket:
    host, port = parse_host_port(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{exc.strerror}: {(host, port)!r}") from None
    sock.listen(1024)
    return sock


def log_url(sock: socket.socket, tls: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/"


def check_tls_files(config: CtConfig) -> None:
    """Both files or neither, and a pair that loads, before anything listens: a bad file
    is a clear error at start, not a failed handshake for every client."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    server_tls(config)


def server_tls(config: CtConfig) -> ssl.SSLContext | None:
    """The listener's TLS context (HTTP/1.1 by ALPN), or None for plain HTTP."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    except (OSError, ssl.SSLError) as exc:
        shown = f"{config.tls_cert}, {config.tls_key}"
        raise ValueError(f"{shown}: not a TLS certificate and its key: {exc}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def origin_of(url: str) -> str:
    """The checkpoint origin: the log's URL without scheme or trailing slash."""
    return url.split("://", 1)[-1].rstrip("/")


def write_log_list(app: CtApp, config: CtConfig, url: str) -> Path:
    """DIR/loglist.json (Chrome's v3 schema). Without --operator the operator's name is
    made from the log ID, so two logs started without one count as two operators."""
    ctlog = app.log
    operator = config.operator or f"acmekit-{hashlib.sha256(ctlog.log_id).hexdigest()[:12]}"
    info = ctlog.log_info(url, operator, f"acmekit CT log {b64(ctlog.log_id)[:8]}")
    path = config.state_dir / LOG_LIST
    atomic_write(path, LogList((info,), datetime.now(UTC), "1").dumps().encode(), 0o644)
    return path


async def serve(config: CtConfig, announce: Callable[[str], None] | None = None) -> None:
    say = announce or (lambda line: print(line, flush=True))
    check_tls_files(config)
    # The database's first work (migrations, the first head, the key's check) on a
    # daemon thread, the loop free: on SQLite a write lock another connection holds
    # keeps it in SQLite's busy handler up to the busy timeout (30 s), where the
    # main thread would run no signal handler, so Ctrl-C waited that long; now it
    # cancels this and the process exits, the thread left.
    app = await on_daemon_thread(functools.partial(assemble, config), "ct-start")
    sock = bind(config.listen)
    url = log_url(sock, config.tls)
    public = config.url or url
    app.tiles = TileReader(app.log, origin_of(public))
    path = write_log_list(app, config, public)
    say(f"ct log: {url}")
    say(f"log id: {b64(app.log.log_id)}")
    say(f"log list: {path.absolute()}")
    # The CA's listener, with its default bounds: a client (an IPv6 one by its /64) is
    # counted at accept, before TLS, and a handshake has `handshake_timeout` seconds. A
    # body is the app's to refuse (413 in the log's own error document, after reading
    # up to DRAIN_LIMIT); past that the listener refuses it unread.
    limits = ListenerLimits(max_body_bytes=DRAIN_LIMIT)
    server = Http1Server(app, limits, server_tls(config))
    sequencer = asyncio.ensure_future(app.log.run_sequencer())
    try:
        with stop_on_signals() as stop:
            await serve_until(stop, [(server, sock)], limits.shutdown_timeout)
    finally:
        app.reads.shutdown(wait=False)  # a read stuck in the database is left
        sequencer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sequencer
        # Bounded as the store's close: a lease row another session holds (or a
        # half-open connection) leaves the lease to expire instead (TimeoutError).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(on_daemon_thread(app.log.release, "ct-release"), CLOSE_GRACE)
        await close_store(app.log.store, CLOSE_GRACE)


async def close_store(store: CtStore, grace: float) -> None:
    """`store.close()` off the loop, waited for `grace` seconds. On a daemon thread, not
    the loop's executor, whose threads `asyncio.run` and the interpreter join at exit:
    a close stuck behind the writer would keep the process alive (a second SIGTERM was
    needed). The batch it waits for has answered no one: its SCTs exist only once it
    commits, and its submitters' connections close with the loop."""
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def close() -> None:
        try:
            store.close()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop ended first
                loop.call_soon_threadsafe(_settle, closed)

    threading.Thread(target=close, name="ct-close", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(closed), grace)
    except TimeoutError:
        log.warning(
            "stopping with a batch of submissions still being written: not committed, "
            "no SCT given for it (the store did not close within %g s)",
            grace,
        )


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def run(config: CtConfig) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))

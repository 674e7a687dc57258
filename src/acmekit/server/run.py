"""Assemble and run the CA: state directory, issuer, store, validator, HTTPS listener,
and the plain-HTTP listener that serves CRLs (both `http1.Http1Server`s on one loop)."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import logging.handlers
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmekit import domains
from acmekit.clock import SystemClock
from acmekit.http1 import App, Http1Server, Message, serve_until, stop_on_signals
from acmekit.loglines import LineFormatter, LineHandler
from acmekit.server import names
from acmekit.server.app import AcmeApp
from acmekit.server.authority import Authority
from acmekit.server.ca import (
    Issuer,
    listener_credentials,
    load_external_issuer,
    load_or_create_issuer,
)
from acmekit.server.config import ServerConfig, split_host_port
from acmekit.server.crl import CrlApp, CrlPublisher
from acmekit.server.lint import Linter
from acmekit.server.mpic.certs import ensure_client_credentials
from acmekit.server.mpic.remote import Corroborator, RemotePerspective, client_context
from acmekit.server.nonces import NonceService
from acmekit.server.schedule import check_profiles
from acmekit.server.store import Store
from acmekit.server.validation import Validator
from acmekit.server.validation.dnssec import DnssecMode, probe_validating_resolver

log = logging.getLogger(__name__)

SYSTEM_CLOCK = SystemClock()
YOUNG_GC_THRESHOLD = 10_000  # settle_process: objects between young collections


@dataclass(frozen=True)
class Assembly:
    app: AcmeApp
    issuer: Issuer
    store: Store
    crl: CrlPublisher


def _issuer(config: ServerConfig, now: datetime, hsm_pin: str | None) -> Issuer:
    """The file hierarchy (made on first start), or the one whose intermediate's key is
    in a token ([hsm]; made by `acmekit server keys`)."""
    if config.hsm is None:
        return load_or_create_issuer(config.state_dir, now, name=config.ca_name)
    from acmekit.server.hsm import Pkcs11Key, TokenAddress

    if hsm_pin is None:
        raise ValueError("[hsm] is set but no PIN was given")
    where = TokenAddress(config.hsm.module, config.hsm.token_label, config.hsm.key_label)

    def connect(intermediate: x509.Certificate) -> Pkcs11Key:
        public = intermediate.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError("the intermediate's key must be ECDSA or RSA to be in a token")
        key = Pkcs11Key(where, hsm_pin, public)
        key.connect()  # a token, key or PIN that is wrong stops the start, saying which
        return key

    return load_external_issuer(config.state_dir, connect)


def assemble(
    config: ServerConfig,
    now: Callable[[], datetime] = SYSTEM_CLOCK.now,
    *,
    hsm_pin: str | None = None,
) -> Assembly:
    """Everything but the listener; tests drive the returned app in-process.

    A configuration that the Baseline Requirements' schedule forbids on `now()`'s date
    is refused first (ValueError, one line: schedule.py)."""
    check_profiles(config.all_profiles, now())
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    issuer = _issuer(config, now(), hsm_pin)
    store = Store.from_url(config.db_url, config.auto_upgrade)
    nonces = NonceService(store, now, scope=config.nonces)
    linter = Linter.for_config(config)
    linter.warm(precert=config.ct.enabled)
    # What the first request would otherwise load: the Public Suffix List (every
    # newOrder's name check; registered domains for rate limits and dns-persist-01).
    names.load_public_suffixes()
    if config.rate_limits.enabled or config.offers_dns_persist:
        domains.load_public_suffixes()
    crl = CrlPublisher(config.crl, config.crl_base_url, store, issuer, now, linter)
    validator = Validator(config.validation_config())
    corroborator = _corroborator(config, issuer, now()) if config.mpic.enabled else None
    authority = Authority(
        config, store, issuer, validator, now, crl=crl, corroborator=corroborator, linter=linter
    )
    return Assembly(AcmeApp(authority, nonces), issuer, store, crl)


def _corroborator(config: ServerConfig, issuer: Issuer, now: datetime) -> Corroborator:
    """The remote perspectives of `[mpic]`, asked with the CA's client certificate (the
    configured one, else `mpic-client.pem` in the state directory, issued when missing)."""
    mpic = config.mpic
    if mpic.client_cert and mpic.client_key:
        cert, key = Path(mpic.client_cert), Path(mpic.client_key)
    else:
        cert, key = ensure_client_credentials(issuer, config.state_dir, now)
    context = client_context(config.state_dir / "root.pem", cert, key)
    remotes = tuple(RemotePerspective(p.name, p.rir, p.url) for p in mpic.perspectives)
    log.info(
        "remote perspectives: %s",
        ", ".join(f"{p.name} ({p.rir}) {p.url}" for p in mpic.perspectives),
    )
    return Corroborator(remotes, context, mpic.timeout)


async def check_resolver(config: ServerConfig) -> None:
    """With `[validation] dnssec = "require-validating-resolver"`, refuse to start (raise
    ResolverNotValidating) unless the resolver shows that it validates DNSSEC."""
    if DnssecMode(config.validation.dnssec) is DnssecMode.OFF:
        return
    resolver = split_host_port(config.dns_resolver) if config.dns_resolver else None
    await probe_validating_resolver(resolver, config.validation.dnssec_probe)


def _listener_hosts(config: ServerConfig) -> list[str]:
    host, _ = config.host_port
    hosts = list(config.listener_hosts)
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    if host and not unspecified and host not in hosts:
        hosts.append(host)
    return hosts


def _certificate_names(chain: Path) -> set[str]:
    """The DNS names and IP addresses the listener certificate (the chain's first) is for."""
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(san.get_values_for_type(x509.DNSName)) | ips


def _authorities(names: set[str], port: int) -> set[str]:
    """The Host header values (RFC 9110 §7.2) that name this listener."""
    shown = {f"[{n}]" if ":" in n else n for n in names}
    found = {f"{n}:{port}" for n in shown}
    return found | shown if port == 443 else found


def bind(config: ServerConfig, address: str | None = None) -> socket.socket:
    host, port = split_host_port(address) if address else config.host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:  # say which address, as asyncio's own bind errors do
        sock.close()
        raise OSError(exc.errno, f"{exc.strerror}: {(host, port)!r}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def directory_url(config: ServerConfig, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}/directory"


async def serve(
    config: ServerConfig,
    announce: Callable[[str], None] | None = None,
    *,
    hsm_pin: str | None = None,
) -> None:
    say = announce or (lambda line: print(line, flush=True))
    crl_sock = _bind_crl(config)
    if crl_sock is not None and not config.crl.base_url:
        host, port = crl_sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        config = replace(config, crl=replace(config.crl, base_url=f"http://{shown}:{port}"))
    await check_resolver(config)
    assembly = assemble(config, hsm_pin=hsm_pin)
    assembly.crl.refresh(force=True)
    cert, key = listener_credentials(
        assembly.issuer, config.state_dir, _listener_hosts(config), SYSTEM_CLOCK.now()
    )
    sock = bind(config)
    if not config.base_url:
        names = _certificate_names(cert) | set(_listener_hosts(config))
        own = directory_url(config, sock).removesuffix("/directory")
        assembly.app.answer_only(_authorities(names, sock.getsockname()[1]), own)
    if crl_sock is not None:
        # Before the directory's line, which a script waits for as the start's end.
        say(f"crl: {config.crl_base_url}/crl/")
    say(f"directory: {directory_url(config, sock)}")
    say(f"root: {(config.state_dir / 'root.pem').absolute()}")
    ct = assembly.app.authority.ct
    if ct is not None:
        need = config.ct.required_scts or "policy"
        say(f"ct: {len(ct.logs)} log(s), SCTs required: {need}")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    tls.set_alpn_protocols(["http/1.1"])
    servers = [(Http1Server(assembly.app, config.limits, tls), sock)]
    if crl_sock is not None:
        # CRLs are fetched by anyone, so this listener has the same bounds.
        servers.append((Http1Server(CrlApp(assembly.crl), config.limits), crl_sock))
    settle_process()
    await _serve_together(assembly.app, servers, config.limits.shutdown_timeout)


def settle_process() -> None:
    """Process-wide settings for serving, once start-up is done."""
    # What start-up built (modules, migrations, pkilint's validator tree) lives as long as
    # the process: frozen out of the collector's sight, a full collection no longer walks
    # it, which cost tens of milliseconds each (docs/decisions.md, "CPU per certificate").
    gc.collect()
    gc.freeze()
    # The youngest generation is collected when container objects made outnumber those
    # freed by the threshold (700 by default): about every 15 certificates here, and its
    # survivors collected again in the next generations. At 10,000 a collection comes
    # every 250 or so, the collector's time per certificate halves (18 to 9 µs) and each
    # pause is about 2 ms; what waits to be collected is still bounded, by that count.
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, old)
    lighter_log_records()


# What a LogRecord knows only from its caller's frame: finding that frame and its source
# file was most of what a record of the CA's cost beyond its line (the logging HOWTO's
# "Optimization" turns it off with `logging._srcfile`).
_SOURCE_FIELDS = ("pathname", "filename", "module", "lineno", "funcName")
_NO_SOURCE = ("(unknown file)", 0, "(unknown function)", None)  # logging's, not looked up


def lighter_log_records() -> list[str]:
    """The CA's own loggers ("acmekit" and those below it) skip the lookup of the
    caller's frame for a record that no handler it reaches can show or read it in;
    their names. Decided for each record when it is made, from the handlers then on its
    way (`_caller_when_shown`): a handler or a format added at any time, by an embedding
    program or a later logging configuration, gets the right fields from its first
    record. Nothing process-wide changes: `logging._srcfile` and the thread and process
    switches stay as they are (they are read before any handler is known, so a record
    made with them off could not be given its fields back), and records of every other
    logger, and of a logger made later, are made as before. A logger whose class has a
    `findCaller` of its own (an embedding program's logger class) keeps it."""
    found = []
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            not isinstance(logger, logging.Logger)
            or type(logger).findCaller is not logging.Logger.findCaller
            or "findCaller" in vars(logger)
        ):
            continue
        if name == "acmekit" or name.startswith("acmekit."):
            logger.findCaller = _caller_when_shown(logger)  # type: ignore[method-assign]
            found.append(name)
    return found


def _caller_when_shown(logger: logging.Logger) -> Callable[..., tuple[Any, ...]]:
    """`logger.findCaller`, looking up the caller only when a record made now may have
    its source fields read: when a stack is asked for, or by the logger's filters, or by
    a LogRecord factory other than logging's own, or by a handler on the record's way up
    the tree (as `callHandlers` goes) that has a filter, is not one that only writes its
    formatter's output, has a formatter not a plain one, or whose format names one of
    them. Any spelling counts (`%(lineno)d`, `{lineno}`): the format is searched for the
    names. About 5,300 instructions a record for the CA's usual tree, against about
    18,600 for the lookup."""
    find = logging.Logger.findCaller
    formatting, plain, shows = _FORMATTING_HANDLERS, _PLAIN_FORMATTERS, _SHOWS_SOURCE

    def find_caller(stack_info: bool = False, stacklevel: int = 1) -> tuple[Any, ...]:
        node: logging.Logger | None = logger
        # A record factory set by the program (`logging.setLogRecordFactory`) is handed
        # the source whatever the handlers show, and may keep or read it.
        may_show = (
            stack_info
            or bool(logger.filters)
            or logging.getLogRecordFactory() is not logging.LogRecord
        )
        while node is not None and not may_show:
            for handler in node.handlers:
                formatter = handler.formatter
                if handler.filters or type(handler) not in formatting:
                    may_show = True
                elif formatter is None:  # the message alone ("%(message)s")
                    continue
                elif type(formatter) not in plain:
                    may_show = True
                else:
                    fmt = formatter._style._fmt or ""
                    shown = shows.get(fmt)
                    if shown is None:
                        shown = shows[fmt] = any(name in fmt for name in _SOURCE_FIELDS)
                    may_show = shown
                if may_show:
                    break
            node = node.parent if node.propagate else None
        if may_show:
            # One level more for this function's frame, which logging does not take
            # for its own (it skips only its module's frames).
            return find(logger, stack_info, stacklevel + 1)
        return _NO_SOURCE

    return find_caller


# Handlers that write only what their formatter makes of a record (NullHandler nothing:
# alembic puts one on its logger when imported, which is in every CA). Any other may
# read the record's fields itself or hand the whole record on (a QueueHandler to its
# listener's handlers, a SocketHandler to a log server), to formats not seen here.
_FORMATTING_HANDLERS = frozenset(
    (
        logging.StreamHandler,
        logging.FileHandler,
        logging.handlers.WatchedFileHandler,
        logging.handlers.RotatingFileHandler,
        logging.handlers.TimedRotatingFileHandler,
        logging.NullHandler,
        LineHandler,
    )
)
# Formatters that read only the fields their format names (and the time).
_PLAIN_FORMATTERS = frozenset((logging.Formatter, LineFormatter))
_SHOWS_SOURCE: dict[str, bool] = {}  # format -> whether it names a source field


async def _serve_together(
    app: App, servers: list[tuple[Http1Server, socket.socket]], shutdown_timeout: float
) -> None:
    """The app's lifespan around the listeners, until SIGTERM or SIGINT; then requests in
    flight get `shutdown_timeout` seconds to be answered."""
    with stop_on_signals() as stop:
        lifespan = Lifespan(app)
        await lifespan.startup()
        try:
            await serve_until(stop, servers, shutdown_timeout)
        finally:
            await lifespan.shutdown()


class Lifespan:
    """The ASGI lifespan protocol, from the server's side: startup before the first
    request, shutdown after the last."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        await self._outbox.put(message)

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        self._task = asyncio.create_task(self._app(scope, self._receive, self._send))
        await self._step("lifespan.startup")

    async def shutdown(self) -> None:
        if self._task is not None and not self._task.done():
            await self._step("lifespan.shutdown")
            await self._task

    async def _step(self, kind: str) -> None:
        assert self._task is not None
        await self._inbox.put({"type": kind})
        answer = asyncio.ensure_future(self._outbox.get())
        await asyncio.wait([answer, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            self._task.result()  # the app's error, if it raised
            raise RuntimeError(f"the app ended without answering {kind}")
        if answer.result()["type"] != f"{kind}.complete":
            raise RuntimeError(f"{kind} failed: {answer.result().get('message', '')}")


def _bind_crl(config: ServerConfig) -> socket.socket | None:
    """The CRL listener's socket; None if it is switched off or its address is taken
    (another process on this host serves the same database's CRLs, or must be moved)."""
    if not config.crl.listen:
        return None
    try:
        return bind(config, config.crl.listen)
    except OSError as exc:
        log.error("CRL listener on %s not started: %s", config.crl.listen, exc)
        return None


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (as Go's runtime
    does at start); the limit now in force. Every client connection, and every
    validation's connection towards a target a client chose, is a descriptor: the
    common soft limit of 1,024 was ten accounts' worth of validations held open by
    targets that never answer, after which the CA accepted no one."""
    try:
        import resource
    except ImportError:  # not on this platform: nothing to raise
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def run(config: ServerConfig, *, hsm_pin: str | None = None) -> None:
    raise_open_files_limit()
    try:
        import uvloop

        uvloop.run(serve(config, hsm_pin=hsm_pin))
    except ImportError:
        asyncio.run(serve(config, hsm_pin=hsm_pin))


__all__ = ["Assembly", "Path", "assemble", "raise_open_files_limit", "run", "serve"]

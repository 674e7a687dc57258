"""Assemble and run the CA: state directory, issuer, store, validator, HTTPS listener,
and the plain-HTTP listener that serves CRLs (both `http1.Http1Server`s on one loop)."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmekit import domains
from acmekit.clock import SystemClock
from acmekit.http1 import App, Http1Server, Message, serve_until, stop_on_signals
from acmekit.loglines import lighter_log_records
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
from acmekit.server.render import Urls
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
    # The listener's own refusals (400, 413, 431, 505, ...) link the directory as the
    # app's answers do (RFC 8555 §7.1): the configured base, else the address it listens on.
    index = Urls(config.base_url or directory_url(config, sock).removesuffix("/directory"))
    servers = [(Http1Server(assembly.app, config.limits, tls, index.directory), sock)]
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

"""Assemble and run the CA: state directory, issuer, store, validator, HTTPS listener."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from acmekit.server.app import AcmeApp
from acmekit.server.authority import Authority
from acmekit.server.ca import Issuer, listener_credentials, load_or_create_issuer
from acmekit.server.config import ServerConfig
from acmekit.server.nonces import NonceService
from acmekit.server.store import Store
from acmekit.server.validation import Validator

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Assembly:
    app: AcmeApp
    issuer: Issuer
    store: Store


def assemble(config: ServerConfig, now: Callable[[], datetime] = utcnow) -> Assembly:
    """Everything but the listener; tests drive the returned app in-process."""
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    issuer = load_or_create_issuer(config.state_dir, now())
    store = Store.from_url(config.db_url)
    nonces = NonceService(store, now)
    authority = Authority(config, store, issuer, Validator(config.validation()), now)
    return Assembly(AcmeApp(authority, nonces), issuer, store)


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


def bind(config: ServerConfig) -> socket.socket:
    host, port = config.host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def directory_url(config: ServerConfig, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}/directory"


async def serve(config: ServerConfig, announce: Callable[[str], None] | None = None) -> None:
    import uvicorn

    say = announce or (lambda line: print(line, flush=True))
    assembly = assemble(config)
    cert, key = listener_credentials(
        assembly.issuer, config.state_dir, _listener_hosts(config), utcnow()
    )
    sock = bind(config)
    say(f"directory: {directory_url(config, sock)}")
    say(f"root: {(config.state_dir / 'root.pem').absolute()}")
    uv = uvicorn.Config(
        assembly.app,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        lifespan="on",
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    await uvicorn.Server(uv).serve(sockets=[sock])


def run(config: ServerConfig) -> None:
    try:
        import uvloop

        uvloop.run(serve(config))
    except ImportError:
        asyncio.run(serve(config))


__all__ = ["Assembly", "Path", "assemble", "run", "serve"]

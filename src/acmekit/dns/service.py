"""`acmekit dns` assembled: store, registry, handler, listeners, API and state file.

`DnsService(config)` is what the command line runs and what tests start in-process:
`await service.start()` binds everything (port 0 is fine) and `service.banner()` is the
one line the command prints so that scripts can wait for it and learn the ports.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.name
from aiohttp import web

from acmekit.dns.api import make_api
from acmekit.dns.handler import DnsHandler
from acmekit.dns.notify import Notifier
from acmekit.dns.registry import Registry
from acmekit.dns.rrl import RrlSettings
from acmekit.dns.server import DnsListener
from acmekit.dns.shared import SharedStore, SharedTimesSigned
from acmekit.dns.state import load_state, save_state
from acmekit.dns.store import RecordStore, parse_name
from acmekit.dns.tsig import make_keyring, parse_key
from acmekit.hostport import parse_host_port
from acmekit.webguard import ClientLimits, GuardedSite

log = logging.getLogger(__name__)

DEFAULT_DELEGATION_DOMAIN = "acme-dns.test"


@dataclass(frozen=True)
class DnsConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8053
    api_host: str | None = "127.0.0.1"
    api_port: int = 8055
    default_ipv4: str | None = None
    default_ipv6: str | None = None
    zones: tuple[str, ...] = ()
    tsig_keys: tuple[str, ...] = ()  # "[ALG:]NAME:BASE64SECRET"
    state: Path | None = None
    api_token: str | None = None
    delegation_domain: str | None = None  # acme-dns registrations live under it
    ns_ipv4: str | None = None  # address of ns1.<zone>; default: the listen address
    ttl: int = 0
    rrl: RrlSettings = field(default_factory=RrlSettings)  # UDP rate limiting per network
    notify: tuple[str, ...] = ()  # "HOST:PORT" of secondaries to send NOTIFY to
    allow_transfer: tuple[str, ...] = ()  # TSIG key names that may AXFR/IXFR
    # TSIG key names that may UPDATE; none: every key not in allow_transfer
    allow_update: tuple[str, ...] = ()
    db: str | None = None  # a database shared with other `acmekit dns` processes
    tcp_max_connections: int | None = None  # None: from the file-descriptor limit
    # the API's deadline for a request head and its bound per client (acmekit.webguard)
    api_limits: ClientLimits = field(default_factory=ClientLimits)

    def nameserver_ipv4(self) -> str:
        if self.ns_ipv4:
            return self.ns_ipv4
        try:
            addr = ipaddress.ip_address(self.listen_host)
        except ValueError:
            return "127.0.0.1"
        return str(addr) if addr.version == 4 and not addr.is_unspecified else "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DnsService:
    """Everything `acmekit dns` runs, started and stopped as one."""

    def __init__(self, config: DnsConfig) -> None:
        if config.api_host and not is_loopback(config.api_host) and not config.api_token:
            raise ValueError("an API listening beyond loopback needs an API token")
        self.config = config
        delegation = parse_name(
            config.delegation_domain
            or (config.zones[0] if config.zones else DEFAULT_DELEGATION_DOMAIN)
        )
        zones = list(config.zones)
        if zones and not any(delegation.is_subdomain(parse_name(z)) for z in zones):
            zones.append(delegation.to_text())
        self.store = RecordStore(
            zones,
            default_ipv4=config.default_ipv4,
            default_ipv6=config.default_ipv6,
            ns_ipv4=config.nameserver_ipv4(),
            ttl=config.ttl,
        )
        self.registry = Registry(delegation)
        # A store that starts empty starts its SOA serial at the time (seconds since the
        # epoch, as BIND's `serial-update-method unixtime`), so that after a restart the
        # secondaries see a higher serial than the one they hold and transfer again; a
        # restored store continues from its own.
        self.store.serial = int(time.time()) % 2**32 or 1
        self._load_state(delegation)
        # with --db the database's records replace the state file's (registrations stay)
        self.shared = None if config.db is None else SharedStore(config.db, self.store)
        keyring = make_keyring(parse_key(spec) for spec in config.tsig_keys)
        allowed = [parse_name(k) for k in config.allow_transfer]
        updaters = [parse_name(k) for k in config.allow_update]
        self.handler = DnsHandler(
            self.store, keyring, allow_transfer=allowed, allow_update=updaters
        )
        if self.shared is not None:  # a replayed UPDATE is refused by every process
            self.handler.times_signed = SharedTimesSigned(self.shared.engine)
        else:  # and by this one after a restart (the state file keeps them)
            self.handler.times_signed.restore(self._macs)
            self.handler.on_unchanged_update.append(self.save)
        targets = [parse_host_port(t) for t in config.notify]
        self.notifier = Notifier(self.store, targets, keyring[allowed[0]] if allowed else None)
        self.listener = DnsListener(
            self.handler, rrl=config.rrl, max_connections=config.tcp_max_connections
        )
        self._stop = asyncio.Event()
        self._sync: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.dns_port = 0
        self.api_url: str | None = None

    def _load_state(self, delegation: dns.name.Name) -> None:
        self._macs: list[dict[str, Any]] = []
        path = self.config.state
        if path is None:
            return
        doc = load_state(path)
        if doc is not None:
            self.store.restore(doc.get("store", {}))
            self._macs = list(doc.get("tsig_macs", []))
            self.registry = Registry.restore(delegation, doc.get("registrations", []))
            log.info(
                "state loaded: %d names, %d registrations",
                len(self.store.names()),
                len(self.registry),
            )
        self.store.on_change.append(self.save)
        self.registry.on_change.append(self.save)

    def save(self) -> None:
        if self.config.state is not None:
            doc: dict[str, Any] = {
                "store": self.store.snapshot(),
                "registrations": self.registry.snapshot(),
            }
            if self.shared is None:  # the database keeps a shared store's MACs
                doc["tsig_macs"] = self.handler.times_signed.snapshot()
            save_state(self.config.state, doc)

    async def start(self) -> None:
        cfg = self.config
        self.dns_port = await self.listener.start(cfg.listen_host, cfg.listen_port)
        self.notifier.start()
        if self.shared is not None:
            self._stop.clear()
            self._sync = asyncio.create_task(self.shared.run(self._stop))
        if cfg.api_host is None:
            return
        self._runner = web.AppRunner(
            make_api(self.store, self.registry, token=cfg.api_token, notifier=self.notifier),
            access_log=None,
        )
        await self._runner.setup()
        # a client trickling a request head, or holding many connections, would keep
        # the API from the programs it serves (acmekit.webguard)
        site = GuardedSite(self._runner, cfg.api_host, cfg.api_port, limits=cfg.api_limits)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.api_url = f"http://{_bracket(host)}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.listener.close()
        await self.notifier.close()
        if self._sync is not None:
            self._stop.set()
            await self._sync
            self._sync = None
        if self.shared is not None:
            self.shared.close()

    def banner(self) -> str:
        line = f"dns: udp+tcp {_bracket(self.config.listen_host)}:{self.dns_port}"
        return line + (f", api {self.api_url}" if self.api_url else "")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host

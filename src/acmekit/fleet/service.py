"""`acmekit fleet serve` and `worker`: the pieces assembled on one event loop.

serve = JSON API and status page + http-01 responder + worker; worker = the worker
alone (any number of them may share one PostgreSQL inventory).

The worker issues through a CaPool (cas.py): the CAs given, in order of preference,
each with its own account. http-01 answers live in the inventory; dns-01 (wildcards,
sites added with the dns-01 method, and http-01 sites whose names are delegated) is
published through `acmekit dns`'s API at the end of the `_acme-challenge` CNAME chain
(delegation.py), when a DNS API is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from aiohttp import web

from acmekit.client.ctlogs import load_log_lists
from acmekit.client.solvers import Solver
from acmekit.client.solvers.accountbound import DnsAccountSolver, DnsPersistSolver
from acmekit.client.solvers.dns01 import Dns01Solver
from acmekit.client.solvers.dnslookup import Server, system_resolver
from acmekit.clock import Clock, SystemClock
from acmekit.fleet.acme import ACCOUNT_KEY_SETTING, DbHttpSolver
from acmekit.fleet.alerts import ShellAlertHook
from acmekit.fleet.api import api_app, challenge_app
from acmekit.fleet.capability import DNS01_SETTING
from acmekit.fleet.cas import CaPool, CaSpec, open_pool
from acmekit.fleet.certapi import LOOPBACK, CertEndpoint, Network, cert_app
from acmekit.fleet.ctstatus import CtCompliance
from acmekit.fleet.delegation import AcmekitDnsProvider, DelegationCheck
from acmekit.fleet.deploy import Deployer
from acmekit.fleet.dnssecondaries import DnsSecondaries
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import to_us
from acmekit.fleet.ondemand import OnDemand, OnDemandPolicy
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit.protocol.messages import ChallengeType
from acmekit.webguard import GuardedSite, loopback_host

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetConfig:
    db: str
    cas: Sequence[CaSpec]  # in order of preference
    listen: tuple[str, int] | None = None  # the API
    api_token: str | None = None  # its bearer token; required beyond loopback
    http01_listen: tuple[str, int] | None = None
    dns_api: str | None = None  # `acmekit dns`'s API, for dns-01
    dns_api_token: str | None = None
    dns_resolver: Server | None = None  # None: the system's (only if needed)
    delegation_zone: str | None = None  # where customers' `_acme-challenge` CNAMEs point
    alert_hook: str | None = None  # a shell command run when a site enters failing
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    auto_upgrade: bool = True  # upgrade the inventory's schema on start, or refuse an old one
    cert_listen: tuple[str, int] | None = None  # certificates for edges (certapi.py)
    cert_allow: tuple[Network, ...] = LOOPBACK  # who may ask it
    cert_token: str | None = None  # and the token they give, if any
    on_demand: OnDemandPolicy | None = None  # names seen at edges may become sites
    ct_log_lists: tuple[str, ...] = ()  # judge each site's SCTs against these (status, metrics)

    def __post_init__(self) -> None:
        if not self.cas:
            raise ValueError("give at least one CA")
        if self.listen is not None and not self.api_token and not loopback_host(self.listen[0]):
            # anyone who reaches it could add sites, or stop their renewals
            raise ValueError("an API listening beyond loopback needs an API token")

    def resolver(self) -> Server:
        return self.dns_resolver or system_resolver()


def solvers_for(
    inventory: Inventory, config: FleetConfig, clock: Clock
) -> dict[ChallengeType, Solver]:
    """http-01 from the inventory; dns-01 through the DNS API, following CNAMEs;
    dns-persist-01 from the customer's standing record, checked through the resolver."""
    found: dict[ChallengeType, Solver] = {
        ChallengeType.HTTP_01: DbHttpSolver(inventory, lambda: to_us(clock.now()))
    }
    # dns-persist-01 needs no DNS API: the customer's standing record is only read.
    found[ChallengeType.DNS_PERSIST_01] = DnsPersistSolver(resolver=config.resolver())
    if config.dns_api is not None:
        provider = AcmekitDnsProvider(config.dns_api, config.dns_api_token)
        resolver = config.resolver()
        # Nameservers are asked on the resolver's port: 53 in the wild; where the whole
        # DNS is one server on another port (a test or demo), that port.
        found[ChallengeType.DNS_01] = Dns01Solver(
            provider,
            resolver=resolver,
            follow_cname=True,
            clock=clock,
            nameserver_port=resolver[1],
        )
        # dns-account-01: the same, at the account's label (a copy per CA account).
        found[ChallengeType.DNS_ACCOUNT_01] = DnsAccountSolver(
            provider,
            resolver=resolver,
            follow_cname=True,
            clock=clock,
            nameserver_port=resolver[1],
        )
    return found


def seed_legacy_account(inventory: Inventory, cas: Sequence[CaSpec]) -> None:
    """A fleet that ran with one `--server` kept its account key as a setting; the same
    CA (named by its directory URL) keeps using it, so no new account is made."""
    legacy = inventory.settings.value(ACCOUNT_KEY_SETTING)
    if legacy is not None and len(cas) == 1 and cas[0].name == cas[0].directory:
        inventory.cas.account_key(cas[0].name, legacy)


async def open_fleet_pool(
    inventory: Inventory, config: FleetConfig, clock: Clock, stack: AsyncExitStack
) -> CaPool:
    seed_legacy_account(inventory, config.cas)
    delegated = None
    if config.delegation_zone is not None:
        delegated = DelegationCheck(config.resolver(), config.delegation_zone)
    solvers = solvers_for(inventory, config, clock)
    if ChallengeType.DNS_01 not in solvers:
        log.warning("no DNS API given: wildcard and dns-01 sites cannot be issued")
    return await open_pool(inventory, config.cas, solvers, clock, stack, delegated=delegated)


async def start_site(app: web.Application, where: tuple[str, int]) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # a deadline for each request head and a bound per client (acmekit.webguard): the
    # http-01 listener faces the internet
    await GuardedSite(runner, where[0], where[1]).start()
    return runner


async def run(
    config: FleetConfig,
    deployers: Sequence[Deployer],
    stop: asyncio.Event,
    announce: Callable[[str], None] = print,
    serve_api: bool = True,
) -> None:
    clock = SystemClock()
    inventory = Inventory.from_url(config.db, config.auto_upgrade)
    metrics = FleetMetrics()
    async with AsyncExitStack() as stack:
        stack.callback(inventory.close)
        dns01 = config.dns_api is not None
        inventory.settings.store(DNS01_SETTING, "yes" if dns01 else "no")
        pool = await open_fleet_pool(inventory, config, clock, stack)
        alert = None if config.alert_hook is None else ShellAlertHook(config.alert_hook)
        worker = Worker(inventory, pool, deployers, clock, config.worker, metrics, alert)
        on_demand = None
        if serve_api and config.on_demand is not None and config.cert_listen is not None:
            on_demand = OnDemand(
                inventory, config.on_demand, lambda: to_us(clock.now()), worker.wake
            )
            stack.push_async_callback(on_demand.close)
        if serve_api and config.listen is not None:
            secondaries = None
            if config.dns_api is not None:  # its GET /secondaries, for the page and /metrics
                secondaries = DnsSecondaries(config.dns_api, config.dns_api_token)
                stack.push_async_callback(secondaries.close)
            app = api_app(
                inventory,
                metrics,
                lambda: to_us(clock.now()),
                cas=[e.name for e in pool.entries],
                delegation_zone=config.delegation_zone,
                dns01=dns01,
                on_demand=on_demand,
                ct=_ct_compliance(config),
                dns_secondaries=secondaries,
                token=config.api_token,
            )
            runner = await start_site(app, config.listen)
            stack.push_async_callback(runner.cleanup)
            announce(f"api: http://{config.listen[0]}:{_port(runner)}/domains")
            announce(f"status: http://{config.listen[0]}:{_port(runner)}/")
        if serve_api and config.http01_listen is not None:
            runner = await start_site(challenge_app(inventory), config.http01_listen)
            stack.push_async_callback(runner.cleanup)
            announce(f"http-01: http://{config.http01_listen[0]}:{_port(runner)}/")
        if serve_api and config.cert_listen is not None:
            endpoint = CertEndpoint(inventory, on_demand, config.cert_allow, config.cert_token)
            runner = await start_site(cert_app(endpoint), config.cert_listen)
            stack.push_async_callback(runner.cleanup)
            announce(f"certificates: http://{config.cert_listen[0]}:{_port(runner)}/certificate")
        announce(f"cas: {', '.join(e.name for e in pool.entries)}")
        announce(f"worker: {worker.owner}")
        await worker.run(stop)


def _port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        return int(address[1])
    return 0


def _ct_compliance(config: FleetConfig) -> CtCompliance | None:
    if not config.ct_log_lists:
        return None
    return CtCompliance(load_log_lists(config.ct_log_lists))

"""`acmekit fleet serve` and `worker`: the pieces assembled on one event loop.

serve = JSON API and status page + http-01 responder + worker; worker = the worker
alone (any number of them may share one PostgreSQL inventory).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from aiohttp import web

from acmekit.client import Client
from acmekit.client.clock import Clock, SystemClock
from acmekit.fleet.acme import AcmeIssuer, DbHttpSolver, account_key
from acmekit.fleet.api import api_app, challenge_app
from acmekit.fleet.deploy import Deployer
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit.protocol.messages import ChallengeType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetConfig:
    db: str
    server: str  # the ACME directory URL
    ca_bundle: str | None = None
    listen: tuple[str, int] | None = None  # the API
    http01_listen: tuple[str, int] | None = None
    contact: tuple[str, ...] = ()
    worker: WorkerConfig = field(default_factory=WorkerConfig)


async def open_issuer(
    inventory: Inventory, config: FleetConfig, clock: Clock, stack: AsyncExitStack
) -> AcmeIssuer:
    """The fleet's account (key in the inventory), registered, and its http-01 solver."""
    client = await stack.enter_async_context(
        Client(config.server, account_key(inventory), ca_bundle=config.ca_bundle, clock=clock)
    )
    await client.register(contact=config.contact)
    solver = DbHttpSolver(inventory, lambda: to_us(clock.now()))
    return AcmeIssuer(client, {ChallengeType.HTTP_01: solver}, config.server)


async def start_site(app: web.Application, where: tuple[str, int]) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, where[0], where[1]).start()
    return runner


async def run(
    config: FleetConfig,
    deployers: Sequence[Deployer],
    stop: asyncio.Event,
    announce: Callable[[str], None] = print,
    serve_api: bool = True,
) -> None:
    clock = SystemClock()
    inventory = Inventory.from_url(config.db)
    metrics = FleetMetrics()
    async with AsyncExitStack() as stack:
        stack.callback(inventory.close)
        issuer = await open_issuer(inventory, config, clock, stack)
        worker = Worker(inventory, issuer, deployers, clock, config.worker, metrics)
        if serve_api and config.listen is not None:
            app = api_app(inventory, metrics, lambda: to_us(clock.now()))
            runner = await start_site(app, config.listen)
            stack.push_async_callback(runner.cleanup)
            announce(f"api: http://{config.listen[0]}:{_port(runner)}/domains")
            announce(f"status: http://{config.listen[0]}:{_port(runner)}/")
        if serve_api and config.http01_listen is not None:
            runner = await start_site(challenge_app(inventory), config.http01_listen)
            stack.push_async_callback(runner.cleanup)
            announce(f"http-01: http://{config.http01_listen[0]}:{_port(runner)}/")
        announce(f"worker: {worker.owner}")
        await worker.run(stop)


def _port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        return int(address[1])
    return 0

"""Two of our CAs in-process (ASGI, no listener) and a fleet that uses both, for the
fleet's limits and backup tests.

Both CAs validate for real: http-01 against the fleet's own responder on a loopback
port, dns-01 through `acmekit dns` on loopback. The fleet reaches each CA through
an AsgiTransport, so the directory URLs' hosts are names only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from acmekit.client.solvers import Solver
from acmekit.client.transport import AsgiTransport
from acmekit.clock import Clock, SystemClock
from acmekit.fleet.acme import DbHttpSolver, Delegated
from acmekit.fleet.api import challenge_app
from acmekit.fleet.cas import CaPool, CaSpec, open_pool
from acmekit.fleet.deploy import DirectoryDeployer
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit.protocol.messages import ChallengeType
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acmekit_server import TEST_VALIDATION
from acmekit_testkit.ports import free_port


def directory(name: str) -> str:
    return f"https://{name}.test/directory"


@asynccontextmanager
async def in_process_ca(config: ServerConfig) -> AsyncIterator[Assembly]:
    assembly = assemble(config)
    try:
        yield assembly
    finally:
        await assembly.app.close()
        assembly.store.engine.dispose()


def ca_config(tmp_path: Path, name: str, dns_port: int, **kw: object) -> ServerConfig:
    """Our CA on SQLite; `kw` sets (or overrides) any other ServerConfig field."""
    fields: dict[str, object] = {
        "state_dir": tmp_path / name,
        "db": f"sqlite:///{tmp_path / (name + '.db')}",
        "dns_resolver": f"127.0.0.1:{dns_port}",
        "validation_timeout": 5.0,
        "validation": TEST_VALIDATION,
        **kw,
    }
    return ServerConfig(**fields)


@dataclass
class TwoCaFleet:
    tmp_path: Path
    cas: Mapping[str, Assembly]
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self.inventory = Inventory.from_url(f"sqlite:///{self.tmp_path / 'fleet.db'}")
        self.edge = DirectoryDeployer(self.tmp_path / "edge")
        self.stack = AsyncExitStack()

    def now(self) -> int:
        return to_us(self.clock.now())

    async def pool(
        self,
        specs: Sequence[CaSpec],
        solvers: Mapping[ChallengeType, Solver] | None = None,
        delegated: Delegated | None = None,
    ) -> CaPool:
        http = DbHttpSolver(self.inventory, self.now)
        transports = {n: AsgiTransport(a.app) for n, a in self.cas.items()}
        return await open_pool(
            self.inventory,
            specs,
            solvers or {ChallengeType.HTTP_01: http},
            self.clock,
            self.stack,
            delegated=delegated,
            transports=transports,
        )

    def worker(self, pool: CaPool, clock: Clock | None = None, **config: object) -> Worker:
        settings = WorkerConfig(owner="w", **config)
        return Worker(self.inventory, pool, [self.edge], clock or self.clock, settings)


@asynccontextmanager
async def two_ca_fleet(
    tmp_path: Path, dns_port: int, configs: Mapping[str, Mapping[str, object]]
) -> AsyncIterator[TwoCaFleet]:
    """CAs named by `configs` (extra ServerConfig fields each), the fleet's http-01
    responder on the port they validate against."""
    port = free_port()
    async with AsyncExitStack() as stack:
        cas = {}
        for name, extra in configs.items():
            config = ca_config(tmp_path, name, dns_port, **{"http01_port": port, **extra})
            cas[name] = await stack.enter_async_context(in_process_ca(config))
        fleet = TwoCaFleet(tmp_path, cas)
        runner = web.AppRunner(challenge_app(fleet.inventory), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield fleet
        finally:
            await fleet.stack.aclose()
            await runner.cleanup()
            fleet.inventory.close()

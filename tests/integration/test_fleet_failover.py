"""Failover between CAs, with real processes on loopback: two `acmekit server`s (the
second requiring External Account Binding), one `acmekit dns`, the fleet's http-01
responder. The first CA is killed (SIGKILL): sites are issued by the second at once,
the first is passed over for its outage pause, and each version records its CA."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509

from acmekit.clock import SystemClock
from acmekit.fleet.acme import DbHttpSolver
from acmekit.fleet.api import challenge_app
from acmekit.fleet.cas import CaPool, CaSpec, open_pool
from acmekit.fleet.deploy import DirectoryDeployer
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod, SiteState, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit.protocol.messages import ChallengeType
from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.ports import free_port

EAB_KID = "fleet-kid"
EAB_HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServerHandle]:
    with dns_server_process(tmp_path_factory.mktemp("dns")) as handle:
        yield handle


@pytest.fixture
def http01_port() -> int:
    return free_port()


@pytest.fixture
def two_cas(
    tmp_path: Path, dns_server: DnsServerHandle, http01_port: int
) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    second = {"eab_required": True, "eab_keys": {EAB_KID: EAB_HMAC}}
    with (
        running_acmekit_server(
            tmp_path / "one", dns_port=dns_server.dns_port, http01_port=http01_port
        ) as one,
        running_acmekit_server(
            tmp_path / "two",
            dns_port=dns_server.dns_port,
            http01_port=http01_port,
            settings=second,
        ) as two,
    ):
        yield one, two


class Fleet:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = SystemClock()
        self.inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
        self.edge = DirectoryDeployer(tmp_path / "edge")
        self.metrics = FleetMetrics()
        self.stack = AsyncExitStack()

    def now(self) -> int:
        return to_us(self.clock.now())

    async def pool(self, specs: list[CaSpec]) -> CaPool:
        solver = DbHttpSolver(self.inventory, self.now)
        return await open_pool(
            self.inventory, specs, {ChallengeType.HTTP_01: solver}, self.clock, self.stack
        )


@pytest.fixture
async def fleet(tmp_path: Path, http01_port: int) -> AsyncIterator[Fleet]:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    f = Fleet(tmp_path)
    runner = web.AppRunner(challenge_app(f.inventory), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http01_port).start()
    yield f
    await f.stack.aclose()
    await runner.cleanup()
    f.inventory.close()


def _specs(one: ServerHandle, two: ServerHandle) -> list[CaSpec]:
    return [
        CaSpec("ca-one", one.directory_url, ca_bundle=str(one.root_path)),
        CaSpec(
            "ca-two",
            two.directory_url,
            eab_kid=EAB_KID,
            eab_hmac_key=EAB_HMAC,
            ca_bundle=str(two.root_path),
        ),
    ]


def _verifies_to(root: Path, pem: str) -> bool:
    chain = x509.load_pem_x509_certificates(pem.encode())
    anchor = x509.load_pem_x509_certificate(root.read_bytes())
    for cert, issuer in zip(chain, [*chain[1:], anchor], strict=True):
        cert.verify_directly_issued_by(issuer)
    return True


async def test_sites_go_to_the_second_ca_while_the_first_is_down(
    fleet: Fleet, two_cas: tuple[ServerHandle, ServerHandle], tmp_path: Path
) -> None:
    one, two = two_cas
    pool = await fleet.pool(_specs(one, two))
    worker = Worker(fleet.inventory, pool, [fleet.edge], fleet.clock, WorkerConfig(owner="w"))

    first = fleet.inventory.sites.add_site(("up.one.test",), ChallengeMethod.HTTP_01, fleet.now())
    assert await worker.run_once() == 1
    assert [v.ca for v in fleet.inventory.sites.versions(first.id)] == ["ca-one"]

    one.kill()
    names = [(f"site{i}.failover.test", f"www.site{i}.failover.test") for i in range(3)]
    ids = fleet.inventory.sites.add_sites(names, ChallengeMethod.HTTP_01, fleet.now())
    assert await worker.run_once() == 3
    for site_id, site_names in zip(ids, names, strict=True):
        site = fleet.inventory.sites.site(site_id)
        assert site is not None and site.state == SiteState.ACTIVE and site.failure_count == 0
        [version] = fleet.inventory.sites.versions(site_id)
        assert version.ca == "ca-two"
        assert _verifies_to(two.root_path, version.fullchain_pem)
        deployed = (tmp_path / "edge" / site_names[0] / "fullchain.pem").read_text()
        assert deployed == version.fullchain_pem
    health = fleet.inventory.cas.health(["ca-one", "ca-two"])
    assert health["ca-one"].down_until is not None and health["ca-one"].down_until > fleet.now()
    assert health["ca-two"].failures == 0
    assert fleet.inventory.cas.account_url("ca-two") is not None  # registered with EAB

    # While the first CA is passed over, a renewal of its certificate goes to the second
    # without even trying the first (no `replaces` across CAs).
    tried_one = worker.metrics.failed["ca-one"]
    assert 1 <= tried_one <= 3  # the sites planned before the first try found it down
    assert fleet.inventory.sites.force_renewal(first.id, fleet.now())
    assert await worker.run_once() == 1
    assert [v.ca for v in fleet.inventory.sites.versions(first.id)] == ["ca-one", "ca-two"]
    assert worker.metrics.failed["ca-one"] == tried_one
    assert worker.metrics.issued["ca-two"] == 4

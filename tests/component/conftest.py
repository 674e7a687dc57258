"""The CA in-process, with a real validator, a real DNS server and a real http-01 responder
on loopback. Requests go straight into the ASGI app (no listener, no TLS)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.acmekit_server import TEST_VALIDATION
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.tiers import BACKEND_PARAMS


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServerHandle]:
    with dns_server_process(tmp_path_factory.mktemp("dns")) as handle:
        yield handle


@pytest.fixture(params=BACKEND_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every CA flow runs on both stores the server supports."""
    with fresh_database(request.param, tmp_path, "ca.db") as url:
        yield url


@pytest.fixture
def config_on(
    tmp_path: Path, dns_server: DnsServerHandle, responder: Http01Responder
) -> Callable[[str], ServerConfig]:
    """The test CA's configuration (its DNS server and http-01 responder) on the
    database at a URL: `ca_config`'s, for a test that makes its own database."""

    def make(url: str) -> ServerConfig:
        return ServerConfig(
            state_dir=tmp_path / "ca",
            db=url,
            dns_resolver=f"127.0.0.1:{dns_server.dns_port}",
            http01_port=responder.port,
            validation_timeout=5.0,
            validation=TEST_VALIDATION,
        )

    return make


@pytest.fixture
def ca_config(config_on: Callable[[str], ServerConfig], db_url: str) -> ServerConfig:
    return config_on(db_url)


@pytest.fixture
async def ca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    assembly = assemble(ca_config)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


@pytest.fixture
def acme(ca: Assembly) -> RawAcme:
    return RawAcme(ca.app)


@pytest.fixture
def flow(acme: RawAcme, responder: Http01Responder) -> Flow:
    return Flow(acme, responder)

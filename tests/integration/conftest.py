"""Shared by integration tests: `acmekit dns` as a process (every name is 127.0.0.1), and
the fleet inventory on SQLite and on PostgreSQL (127.0.0.1:5432), and the CA's store on a
fresh PostgreSQL database (`pg_store`, its URL `pg_url`). The http-01 responder
(`responder`) comes from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.fleet.inventory import Inventory
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database, fresh_postgres_database
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.tiers import BACKEND_PARAMS


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServerHandle]:
    with dns_server_process(tmp_path_factory.mktemp("dns")) as handle:
        yield handle


@pytest.fixture(params=BACKEND_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for the fleet inventory, on each backend."""
    with fresh_database(request.param, tmp_path, "fleet.db") as url:
        yield url


@pytest.fixture
def inventory(db_url: str) -> Iterator[Inventory]:
    inv = Inventory.from_url(db_url)
    yield inv
    inv.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres_database("acmekit_store") as url:
        yield url


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store.from_url(pg_url)
    yield store
    store.engine.dispose()

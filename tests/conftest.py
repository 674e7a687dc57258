"""Fixtures shared by every kind of test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dns.resolver
import pytest

from acmekit.fleet.inventory import Inventory
from acmekit_testkit.acme_raw import Http01Responder
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.resolvers import guard_subprocesses, unguard_this_process
from acmekit_testkit.tiers import BACKEND_PARAMS, require_postgres_or_skip

INTEROP = Path(__file__).parent / "interop"


def _no_system_resolver(*args: object, **kwargs: object) -> None:
    raise AssertionError("a test reached for the machine's DNS resolver: give a loopback one")


def pytest_configure(config: pytest.Config) -> None:
    """No test may consult the machine's resolver: a resolver configured from the system
    (resolv.conf) fails loudly, so code that would fall back to it is caught in tests.
    The Python processes tests start (the command line, certbot) get the same rule for
    the C library's lookups (`socket.getaddrinfo`): names other than localhost fail."""
    dns.resolver.BaseResolver.read_resolv_conf = _no_system_resolver  # type: ignore[method-assign]
    guard_subprocesses(os.environ)
    unguard_this_process()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/interop is an `interop` test, marked before `-m` selects."""
    for item in items:
        if item.path.is_relative_to(INTEROP):
            item.add_marker(pytest.mark.interop)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") is not None:
        require_postgres_or_skip()


@pytest.fixture
async def responder() -> AsyncIterator[Http01Responder]:
    """An http-01 responder on a free loopback port for the CA to validate against."""
    r = Http01Responder()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture(params=BACKEND_PARAMS)
def inventory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inventory]:
    """A fleet inventory on a fresh database of each backend (a module's own fixture of
    this name stands in for it there)."""
    with fresh_database(request.param, tmp_path, "fleet.db") as url:
        inv = Inventory.from_url(url)
        yield inv
        inv.close()

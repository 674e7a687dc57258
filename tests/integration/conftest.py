"""Shared by integration tests: `acmekit dns` as a process (every name is 127.0.0.1) and
an http-01 responder on a free loopback port for the CA to validate against."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from support.acme_raw import Http01Responder
from support.dnsserver import DnsServerHandle, dns_server_process


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServerHandle]:
    with dns_server_process(tmp_path_factory.mktemp("dns")) as handle:
        yield handle


@pytest.fixture
async def responder() -> AsyncIterator[Http01Responder]:
    r = Http01Responder()
    await r.start()
    yield r
    await r.stop()

"""Shared pieces for interop tests: `acmekit dns` on loopback and our CA as a real process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.acmekit_server import ServerHandle, running_acmekit_server
from support.dnsserver import DnsServerHandle, dns_server_process
from support.ports import free_port


@pytest.fixture(scope="session")
def interop_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServerHandle]:
    with dns_server_process(tmp_path_factory.mktemp("interop-dns")) as handle:
        yield handle


@dataclass(frozen=True)
class CaUnderTest:
    server: ServerHandle
    dns: DnsServerHandle
    http01_port: int
    tlsalpn01_port: int


@pytest.fixture(scope="module")
def acmekit_ca(
    tmp_path_factory: pytest.TempPathFactory, interop_dns: DnsServerHandle
) -> Iterator[CaUnderTest]:
    workdir: Path = tmp_path_factory.mktemp("acmekit-ca")
    http01, tlsalpn01 = free_port(), free_port()
    with running_acmekit_server(
        workdir, dns_port=interop_dns.dns_port, http01_port=http01, tlsalpn01_port=tlsalpn01
    ) as server:
        yield CaUnderTest(server, interop_dns, http01, tlsalpn01)

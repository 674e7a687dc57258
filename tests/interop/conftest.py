"""Shared pieces for interop tests: `acmekit dns` on loopback, our CA as a real process, and
BIND's signed test zones behind a validating unbound (acmekit_testkit.dnssec)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from acmekit_testkit.acmekit_server import CaProcess, running_ca_process
from acmekit_testkit.dnssec import DnssecDns, running_dnssec_dns
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process

CaUnderTest = CaProcess[DnsServerHandle]


@pytest.fixture(scope="session")
def interop_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServerHandle]:
    with dns_server_process(tmp_path_factory.mktemp("interop-dns")) as handle:
        yield handle


@pytest.fixture(scope="module")
def acmekit_ca(
    tmp_path_factory: pytest.TempPathFactory, interop_dns: DnsServerHandle
) -> Iterator[CaUnderTest]:
    with running_ca_process(tmp_path_factory.mktemp("acmekit-ca"), interop_dns) as ca:
        yield ca


@pytest.fixture(scope="module")
def dnssec_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnssecDns]:
    with running_dnssec_dns(tmp_path_factory.mktemp("dnssec-dns")) as peers:
        yield peers

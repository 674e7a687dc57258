"""dns-persist-01 against a hostile CA: our CA in-process, its answers rewritten on the
way out so that the challenge's `issuerDomainNames` carry what a CA could use to write
parameters of its own into the record the client publishes (a `;`, spaces, control
characters, upper case, a trailing dot, an over-long label). The client refuses the
challenge with an error that says why, and publishes nothing: `acmekit dns` on loopback
(its real API, a real TXT query) holds no record at the name afterwards. A well-formed
name passes through the same rewriting and the order is issued."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import dns.asyncquery
import dns.message
import dns.rdatatype
import pytest

from acmekit.client import Client
from acmekit.client.persist import PersistUnavailable
from acmekit.client.solvers.accountbound import DnsPersistSolver
from acmekit.client.solvers.dns01 import Dns01Solver
from acmekit.client.transport import AsgiTransport
from acmekit.fleet.delegation import AcmekitDnsProvider
from acmekit.protocol.messages import ChallengeType
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import new_key
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.hostile_ca import RewritingCa

DIRECTORY = "https://ca.test/directory"
_serial = itertools.count()


def _zone(tag: str) -> str:
    return f"{tag}{next(_serial)}-{int(time.time() * 1000) % 10**8}.persist.test"


@pytest.fixture
def persist_config(ca_config: ServerConfig) -> ServerConfig:
    return replace(
        ca_config,
        dns_persist_01=True,
        caa_identities=("ca.persist.test",),
        issuer_domain_names=("ca.persist.test",),
    )


@pytest.fixture
async def pca(persist_config: ServerConfig) -> AsyncIterator[Assembly]:
    assembly = assemble(persist_config)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def _txt(server: DnsServerHandle, name: str) -> list[bytes]:
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    answer = await dns.asyncquery.udp(query, server.host, port=server.dns_port, timeout=5)
    return [b"".join(rd.strings) for rrset in answer.answer for rd in rrset]


async def _issue_through(
    pca: Assembly, server: DnsServerHandle, names: list[Any], name: str
) -> None:
    app = RewritingCa(pca.app, "issuerDomainNames", names)
    publisher = Dns01Solver(
        AcmekitDnsProvider(server.api_url),
        resolver=(server.host, server.dns_port),
        propagation_interval=0.1,
    )
    async with Client(DIRECTORY, new_key(), transport=AsgiTransport(app)) as client:
        await client.register()
        solver = DnsPersistSolver(publisher, resolver=(server.host, server.dns_port))
        await client.issue([name], {ChallengeType.DNS_PERSIST_01: solver}, make_csr(name)[1])


HOSTILE = [
    ["ca.persist.test; policy=wildcard"],  # a parameter of the CA's making
    ["ca.persist.test;persistUntil=99999999999"],
    ["ca.persist.test accounturi=https://evil.test/a"],  # whitespace
    ["ca.persist.test\taccounturi=x"],
    ["ca.persist.test\n"],  # a control character
    ["ca.persist.test\x00"],
    ["CA.persist.test"],  # §3.1: lowercase
    ["ca.persist.test."],  # §3.1: no trailing dot
    ["ca..persist.test"],
    ["-ca.persist.test"],
    ["a" * 64 + ".persist.test"],  # a label past 63 octets
    [("a" * 62 + ".") * 4 + "test"],  # past 253 octets
    ["ca.persist.test", "ok.test;x=1"],  # a bad second name counts too
    ["ca.persist.tést"],  # a U-label
]


@pytest.mark.parametrize("names", HOSTILE)
async def test_a_hostile_issuer_name_is_refused_and_nothing_published(
    pca: Assembly, dns_server: DnsServerHandle, names: list[Any]
) -> None:
    name = _zone("hostile")
    with pytest.raises(PersistUnavailable, match="issuer domain name") as err:
        await _issue_through(pca, dns_server, names, name)
    assert "lowercase DNS name" in str(err.value)
    assert "\n" not in str(err.value) and "\x00" not in str(err.value)
    assert await _txt(dns_server, f"_validation-persist.{name}") == []


async def test_a_well_formed_issuer_name_is_published_and_issued(
    pca: Assembly, dns_server: DnsServerHandle
) -> None:
    name = _zone("fine")
    await _issue_through(pca, dns_server, ["ca.persist.test"], name)
    (value,) = await _txt(dns_server, f"_validation-persist.{name}")
    assert value.startswith(b"ca.persist.test; accounturi=")

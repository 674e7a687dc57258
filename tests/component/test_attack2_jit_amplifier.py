"""Just-in-time dns-persist-01 at new-order must not be an amplifier
(draft-ietf-acme-dns-persist-02 §4.4: lookups rate-limited per domain, whoever asks).

One signed new-order naming many subdomains of one domain made the CA look up every one
of them at once (up to `max_identifiers`, 100), and the same again ten seconds later
with the same names: a flood of queries at the domain's name servers, against one
request, with no failed validation ever counted. The lookups a new-order may cause are
now bounded per order and per registered domain.

Our client library against our CA in-process, validating against `acmekit dns` on loopback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from acmekit.client import Client
from acmekit.client.solvers.accountbound import DnsPersistSolver
from acmekit.client.transport import AsgiTransport
from acmekit.protocol.messages import AuthorizationStatus, ChallengeType, OrderStatus
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit.server.standing import JIT_PER_DOMAIN, JIT_PER_ORDER
from acmekit_testkit.acme_raw import new_key
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle

DIRECTORY = "https://ca.test/directory"
LOOKUP = "dns-persist-01 just-in-time: authorization"


def _stamp() -> str:
    return str(int(time.time() * 1000) % 10**9)


@pytest.fixture
async def jca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    config = replace(ca_config, dns_persist_01=True, caa_identities=("ca.jit.test",))
    assembly = assemble(config)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def _veteran(assembly: Assembly, dns: DnsServerHandle, domain: str) -> Client:
    """An account that has met dns-persist-01 once (the draft's condition for JIT)."""
    client = Client(DIRECTORY, new_key(), transport=AsgiTransport(assembly.app))
    await client.__aenter__()
    await client.register()
    name = f"first.{domain}"
    record = await client.persist_record(name)
    await dns.set_txt(record.name, record.value)
    solvers = {ChallengeType.DNS_PERSIST_01: DnsPersistSolver()}
    await client.issue([name], solvers, make_csr(name)[1])
    return client


def _lookups(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.getMessage().startswith(LOOKUP))


async def test_one_new_order_for_many_subdomains_is_not_a_query_flood(
    jca: Assembly, dns_server: DnsServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    victim = f"victim{_stamp()}.example-jit.com"
    client = await _veteran(jca, dns_server, f"attacker{_stamp()}.example-jit.net")
    try:
        names = [f"n{i}.{victim}" for i in range(60)]
        with caplog.at_level(logging.INFO, logger="acmekit.server.authority"):
            order = await client.new_order(names)
            assert order.status == OrderStatus.PENDING
            first = _lookups(caplog)
            # Another account (any number of them) asking for the same domain's
            # other names does not get a fresh allowance.
            other = await _veteran(jca, dns_server, f"other{_stamp()}.example-jit.org")
            try:
                more = [f"m{i}.{victim}" for i in range(60)]
                await other.new_order(more)
            finally:
                await other.__aexit__(None, None, None)
        assert first <= min(JIT_PER_ORDER, JIT_PER_DOMAIN), first
        assert _lookups(caplog) <= JIT_PER_DOMAIN, _lookups(caplog)
        # Nothing is held against anyone: the authorizations stay pending.
        for authz in await client.authorizations(order):
            assert authz.status == AuthorizationStatus.PENDING
    finally:
        await client.__aexit__(None, None, None)


async def test_another_domains_standing_record_is_still_found_at_once(
    jca: Assembly, dns_server: DnsServerHandle
) -> None:
    """The bound is the flooded domain's: another domain's record still validates."""
    domain = f"site{_stamp()}.example-jit.com"
    client = await _veteran(jca, dns_server, domain)
    try:
        flooded = f"flooded{_stamp()}.example-jit.org"
        await client.new_order([f"n{i}.{flooded}" for i in range(2 * JIT_PER_DOMAIN)])
        name = f"www.{domain}"
        record = await client.persist_record(name)
        await dns_server.set_txt(record.name, record.value)
        order = await client.new_order([name])
        assert order.status == OrderStatus.READY
    finally:
        await client.__aexit__(None, None, None)

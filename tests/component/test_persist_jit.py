"""Just-in-time dns-persist-01 (draft-ietf-acme-dns-persist-02 §4.4): where the record
already stands, new-order answers with the authorization valid, after the same checks as
an answered challenge (the record, CAA); on any failure the authorization stays pending
with its challenges and nothing is held against the account.

Our client library against our CA in-process, validating against `acmekit dns` on loopback.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from cryptography import x509

from acmekit.client import Client
from acmekit.client.solvers.accountbound import DnsPersistSolver
from acmekit.client.transport import AsgiTransport
from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    OrderStatus,
)
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import new_key
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle

DIRECTORY = "https://ca.test/directory"
_serial = itertools.count()


def _zone(tag: str) -> str:
    return f"{tag}{next(_serial)}-{int(time.time() * 1000) % 10**8}.jit.test"


def _config(ca_config: ServerConfig, **changes: object) -> ServerConfig:
    return replace(
        ca_config,
        dns_persist_01=True,
        caa_identities=("ca.jit.test",),
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
async def jca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    assembly = assemble(_config(ca_config))
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def _client(assembly: Assembly) -> Client:
    client = Client(DIRECTORY, new_key(), transport=AsgiTransport(assembly.app))
    await client.__aenter__()
    await client.register()
    return client


@pytest.fixture
async def client(jca: Assembly) -> AsyncIterator[Client]:
    c = await _client(jca)
    yield c
    await c.__aexit__(None, None, None)


async def _publish(client: Client, dns: DnsServerHandle, name: str, **kw: object) -> None:
    record = await client.persist_record(name, **kw)  # type: ignore[arg-type]
    await dns.set_txt(record.name, record.value)


async def _first_validation(client: Client, dns: DnsServerHandle) -> None:
    """The account meets dns-persist-01 once the usual way (§4.4: JIT only after)."""
    name = _zone("first")
    await _publish(client, dns, name)
    solvers = {ChallengeType.DNS_PERSIST_01: DnsPersistSolver()}
    await client.issue([name], solvers, make_csr(name)[1])


def _sans(pem: str) -> list[str]:
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


async def test_a_standing_record_makes_the_new_authorization_valid_at_once(
    client: Client, dns_server: DnsServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    await _first_validation(client, dns_server)
    base = _zone("wild")
    await _publish(client, dns_server, base, wildcard=True)
    names = [f"*.{base}", base]
    with caplog.at_level(logging.INFO, logger="acmekit.server.authority"):
        order = await client.new_order(names)
    assert order.status == OrderStatus.READY
    authzs = await client.authorizations(order)
    assert [a.status for a in authzs] == [AuthorizationStatus.VALID] * 2
    for authz in authzs:
        persist = next(c for c in authz.challenges if c.type == "dns-persist-01")
        assert persist.status == ChallengeStatus.VALID
        assert persist.raw.get("validated")
    assert "valid from its standing record" in caplog.text  # §4.4: logged
    # Finalized with no challenge answered and no solver at all.
    done = await client.finalize(order, make_csr(*names)[1])
    done = await client.poll_order(done)
    assert done.certificate is not None
    assert _sans(await client.download_certificate(done.certificate)) == sorted(names)


async def test_an_account_that_never_met_the_challenge_answers_it_first(
    client: Client, dns_server: DnsServerHandle
) -> None:
    name = _zone("newcomer")
    await _publish(client, dns_server, name)
    order = await client.new_order([name])
    assert order.status == OrderStatus.PENDING
    (authz,) = await client.authorizations(order)
    assert authz.status == AuthorizationStatus.PENDING
    # The record stands, so answering the challenge validates it as usual.
    solvers = {ChallengeType.DNS_PERSIST_01: DnsPersistSolver()}
    issued = await client.issue([name], solvers, make_csr(name)[1])
    assert _sans(issued.fullchain_pem) == [name]


async def test_no_record_or_another_accounts_leaves_it_pending_with_no_failure(
    client: Client, dns_server: DnsServerHandle, jca: Assembly
) -> None:
    await _first_validation(client, dns_server)
    absent, theirs = _zone("absent"), _zone("theirs")
    other = await _client(jca)
    try:
        await _publish(other, dns_server, theirs)
    finally:
        await other.__aexit__(None, None, None)
    order = await client.new_order([absent, theirs])
    assert order.status == OrderStatus.PENDING
    for authz in await client.authorizations(order):
        assert authz.status == AuthorizationStatus.PENDING
        assert {c.status for c in authz.challenges} == {ChallengeStatus.PENDING}
        assert all("error" not in c.raw for c in authz.challenges)


async def test_caa_still_applies(
    client: Client, dns_server: DnsServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    await _first_validation(client, dns_server)
    name = _zone("caa")
    await _publish(client, dns_server, name)
    policies = [{"tag": "issue", "value": "another-ca.example"}]
    await dns_server.post("/add-caa", {"host": name, "policies": policies})
    with caplog.at_level(logging.INFO, logger="acmekit.server.authority"):
        order = await client.new_order([name])
    assert "stays pending: urn:ietf:params:acme:error:caa" in caplog.text
    (authz,) = await client.authorizations(order)
    assert authz.status == AuthorizationStatus.PENDING
    assert {c.status for c in authz.challenges} == {ChallengeStatus.PENDING}


async def test_a_lookup_past_its_bound_leaves_it_pending(
    ca_config: ServerConfig, dns_server: DnsServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    # A bound no lookup can meet: the authorization is answered pending, untouched.
    assembly = assemble(_config(ca_config, persist_jit_timeout=1e-9))
    try:
        client = await _client(assembly)
        try:
            await _first_validation(client, dns_server)
            name = _zone("late")
            await _publish(client, dns_server, name)
            with caplog.at_level(logging.INFO, logger="acmekit.server.authority"):
                order = await client.new_order([name])
            assert "stays pending: no answer within" in caplog.text
            (authz,) = await client.authorizations(order)
            assert authz.status == AuthorizationStatus.PENDING
            assert {c.status for c in authz.challenges} == {ChallengeStatus.PENDING}
        finally:
            await client.__aexit__(None, None, None)
    finally:
        await assembly.app.close()
        assembly.store.engine.dispose()


async def test_off_when_the_bound_is_zero(
    ca_config: ServerConfig, dns_server: DnsServerHandle
) -> None:
    assembly = assemble(_config(ca_config, persist_jit_timeout=0.0))
    try:
        client = await _client(assembly)
        try:
            await _first_validation(client, dns_server)
            name = _zone("off")
            await _publish(client, dns_server, name)
            order = await client.new_order([name])
            assert order.status == OrderStatus.PENDING
        finally:
            await client.__aexit__(None, None, None)
    finally:
        await assembly.app.close()
        assembly.store.engine.dispose()

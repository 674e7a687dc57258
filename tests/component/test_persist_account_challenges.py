"""dns-persist-01 and dns-account-01: our client library against our CA in-process, the
CA validating against `acmekit dns` on loopback (real UDP/TCP queries, its real API).

dns-persist-01 (draft-ietf-acme-dns-persist-02): the record is published once, before any
order, and every order after it is validated from it with no DNS change; a record for
another account, another CA, past its persistUntil, or without policy=wildcard for a
wildcard fails with a problem that says which; junk at the name (oversized values,
control characters, 50 records, a CNAME loop) is a clear failure, never a 5xx.
dns-account-01 (draft-ietf-acme-dns-account-label-03): dns-01 at the account's label,
through the acmekit DNS API provider.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography import x509

from acmekit.client import Client
from acmekit.client.solvers.accountbound import DnsAccountSolver, DnsPersistSolver
from acmekit.client.transport import AsgiTransport
from acmekit.fleet.delegation import AcmekitDnsProvider
from acmekit.protocol import dnsaccount
from acmekit.protocol.messages import AuthorizationStatus, ChallengeType
from acmekit.protocol.problems import AcmeError
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import new_key
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle

DIRECTORY = "https://ca.test/directory"
_serial = itertools.count()


def _zone(tag: str) -> str:
    """A fresh name per test: the DNS server is shared by the whole session."""
    return f"{tag}{next(_serial)}-{int(time.time() * 1000) % 10**8}.persist.test"


@pytest.fixture
def persist_config(ca_config: ServerConfig) -> ServerConfig:
    return replace(
        ca_config,
        dns_persist_01=True,
        dns_account_01=True,
        caa_identities=("ca.persist.test", "other.persist.test"),
        issuer_domain_names=("ca.persist.test",),
    )


@pytest.fixture
async def pca(persist_config: ServerConfig) -> AsyncIterator[Assembly]:
    assembly = assemble(persist_config)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


@pytest.fixture
async def client(pca: Assembly) -> AsyncIterator[Client]:
    async with Client(DIRECTORY, new_key(), transport=AsgiTransport(pca.app)) as c:
        await c.register()
        yield c


def _sans(pem: str) -> list[str]:
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


async def _failure(client: Client, names: list[str]) -> dict[str, object]:
    """The problem the CA gives the single authorization of an order for `names`."""
    solver = DnsPersistSolver()
    with pytest.raises(AcmeError) as err:
        await client.issue(names, {ChallengeType.DNS_PERSIST_01: solver}, make_csr(*names)[1])
    doc = err.value.problem.to_json()
    subs = doc.get("subproblems") or [doc]
    assert isinstance(subs, list)
    first = subs[0]
    assert isinstance(first, dict)
    return first


async def test_directory_and_challenge_objects(client: Client, pca: Assembly) -> None:
    directory = await client.directory()
    assert directory.issuer_domain_names == ("ca.persist.test",)
    assert directory.account_hash_prefix == "https://ca.test/acme/account-hash/"
    order = await client.new_order([_zone("shape")])
    (authz,) = await client.authorizations(order)
    persist = next(c for c in authz.challenges if c.type == "dns-persist-01")
    assert persist.issuer_domain_names == ("ca.persist.test",)
    assert "token" not in persist.raw  # draft -02 §3.1: no token
    account = next(c for c in authz.challenges if c.type == "dns-account-01")
    assert account.token


async def test_off_by_default(ca: Assembly) -> None:
    async with Client(DIRECTORY, new_key(), transport=AsgiTransport(ca.app)) as c:
        await c.register()
        assert (await c.directory()).account_hash_prefix is None
        (authz,) = await c.authorizations(await c.new_order([_zone("off")]))
        assert {ch.type for ch in authz.challenges} == {"http-01", "dns-01", "tls-alpn-01"}


async def test_one_standing_record_serves_every_order(
    client: Client, dns_server: DnsServerHandle, pca: Assembly
) -> None:
    name = _zone("single")
    until = int(time.time()) + 86400 * 3
    record = await client.persist_record(name, persist_until=until)
    assert record.name == f"_validation-persist.{name}"
    await dns_server.set_txt(record.name, record.value)
    solver = DnsPersistSolver(persist_until=until)
    issued = await client.issue([name], {ChallengeType.DNS_PERSIST_01: solver}, make_csr(name)[1])
    assert _sans(issued.fullchain_pem) == [name]
    assert [r.value for r in solver.records] == [record.value]
    # §4.1 item 5: the authorization does not outlive persistUntil.
    (authz,) = await client.authorizations(issued.order)
    assert authz.expires is not None
    assert authz.expires <= datetime.fromtimestamp(until, UTC)
    # A fresh authorization (the old one deactivated) validates from the same record.
    await client.deactivate_authorization(authz)
    again = await client.issue([name], {ChallengeType.DNS_PERSIST_01: solver}, make_csr(name)[1])
    assert _sans(again.fullchain_pem) == [name]


async def test_wildcard_site_from_one_record_with_policy(
    client: Client, dns_server: DnsServerHandle
) -> None:
    base = _zone("wild")
    record = await client.persist_record(f"*.{base}", any_domain=True)
    assert record.value.endswith("; policy=wildcard")
    await dns_server.set_txt(record.name, record.value)
    names = [f"*.{base}", base]
    issued = await client.issue(
        names, {ChallengeType.DNS_PERSIST_01: DnsPersistSolver()}, make_csr(*names)[1]
    )
    assert _sans(issued.fullchain_pem) == sorted(names)


async def test_wildcard_without_policy_says_so(client: Client, dns_server: DnsServerHandle) -> None:
    base = _zone("nopolicy")
    record = await client.persist_record(base)
    await dns_server.set_txt(record.name, record.value)
    problem = await _failure(client, [f"*.{base}"])
    assert problem["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "policy=wildcard" in str(problem["detail"])


async def test_another_account_another_ca_and_expiry_say_which(
    client: Client, dns_server: DnsServerHandle, pca: Assembly
) -> None:
    async with Client(DIRECTORY, new_key(), transport=AsgiTransport(pca.app)) as other:
        await other.register()
        theirs = _zone("theirs")
        record = await other.persist_record(theirs)
        await dns_server.set_txt(record.name, record.value)
    problem = await _failure(client, [theirs])
    assert problem["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "another account" in str(problem["detail"])

    otherca = _zone("otherca")
    mine = await client.persist_record(otherca)
    await dns_server.set_txt(mine.name, mine.value.replace("ca.persist.test", "other.persist.test"))
    problem = await _failure(client, [otherca])
    assert "another CA (other.persist.test)" in str(problem["detail"])

    expired = _zone("expired")
    old = await client.persist_record(expired, persist_until=int(time.time()) - 60)
    await dns_server.set_txt(old.name, old.value)
    problem = await _failure(client, [expired])
    assert "persistUntil" in str(problem["detail"])


async def test_bad_input_is_a_clear_failure(client: Client, dns_server: DnsServerHandle) -> None:
    junk = _zone("junk")
    host = f"_validation-persist.{junk}"
    good = await client.persist_record(junk)
    await dns_server.set_txt(host, good.value + "; pad=" + "x" * 1500)  # oversized
    await dns_server.set_txt(host, good.value + "\x07")  # a control character
    for i in range(48):  # 50 records at one name
        await dns_server.set_txt(host, f"ca{i}.example; accounturi=https://ca{i}.example/a/{i}")
    problem = await _failure(client, [junk])
    assert problem["type"] == "urn:ietf:params:acme:error:malformed"
    assert "longer than 1024" in str(problem["detail"]) or "control" in str(problem["detail"])

    loop = _zone("loop")
    provider = AcmekitDnsProvider(dns_server.api_url)
    await provider.set_cname(f"_validation-persist.{loop}.", f"a.{loop}.")
    await provider.set_cname(f"a.{loop}.", f"_validation-persist.{loop}.")
    problem = await _failure(client, [loop])
    assert problem["type"] == "urn:ietf:params:acme:error:dns"
    # acmekit dns answers the loop SERVFAIL; a resolver that hands it back is cut off
    # after resolve.MAX_CNAME_HOPS: either way a dns problem, not a 5xx.
    assert "SERVFAIL" in str(problem["detail"]) or "CNAME" in str(problem["detail"])


async def test_dns_account_01_single_and_wildcard(
    client: Client, dns_server: DnsServerHandle
) -> None:
    solver = DnsAccountSolver(
        AcmekitDnsProvider(dns_server.api_url),
        resolver=("127.0.0.1", dns_server.dns_port),
        nameserver_port=dns_server.dns_port,
        propagation_interval=0.1,
        propagation_timeout=20,
    )
    base = _zone("acct")
    names = [f"*.{base}", base]
    issued = await client.issue(names, {ChallengeType.DNS_ACCOUNT_01: solver}, make_csr(*names)[1])
    assert _sans(issued.fullchain_pem) == sorted(names)
    assert client.account_url is not None
    assert solver.record_name(base) == dnsaccount.record_name(base, client.account_url)
    (authz, _) = await client.authorizations(issued.order)
    assert authz.status == AuthorizationStatus.VALID


async def test_a_record_made_before_a_key_change_still_validates(
    client: Client, dns_server: DnsServerHandle
) -> None:
    # draft -02 §4.2: the CA accepts hashed URIs made with keys the account used before.
    name = _zone("rollover")
    before = await client.persist_record(name)
    await dns_server.set_txt(before.name, before.value)
    await client.key_change(new_key())
    assert (await client.persist_record(name)).value != before.value
    solvers = {ChallengeType.DNS_PERSIST_01: DnsPersistSolver()}
    issued = await client.issue([name], solvers, make_csr(name)[1])
    assert _sans(issued.fullchain_pem) == [name]


async def test_a_parents_wildcard_record_covers_its_subdomains(
    client: Client, dns_server: DnsServerHandle
) -> None:
    # draft -02 §6: policy=wildcard at example.com covers www.example.com and
    # *.dept.example.com; without the policy it covers the parent alone.
    parent = _zone("parent")
    record = await client.persist_record(parent, wildcard=True)
    await dns_server.set_txt(record.name, record.value)
    names = [f"www.{parent}", f"*.dept.{parent}"]
    issued = await client.issue(
        names, {ChallengeType.DNS_PERSIST_01: DnsPersistSolver()}, make_csr(*names)[1]
    )
    assert _sans(issued.fullchain_pem) == sorted(names)

    plain = _zone("plainparent")
    narrow = await client.persist_record(plain)
    await dns_server.set_txt(narrow.name, narrow.value)
    problem = await _failure(client, [f"www.{plain}"])
    assert problem["type"] == "urn:ietf:params:acme:error:unauthorized", problem
    assert f"_validation-persist.www.{plain}" in str(problem["detail"])

"""Bad records at the draft challenges' names, one case at a time, for dns-persist-01
and dns-account-01: an oversized TXT value, a value with control characters, 50 records
at one name, a CNAME loop. Each fails its authorization with a problem that says what
was wrong (a 4xx type, never serverInternal); one good record among 49 junk ones passes.

Our client library against our CA in-process, validating against `acmekit dns` on loopback.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from acmekit.client import Client
from acmekit.client.resources import Challenge
from acmekit.client.solvers import Solver
from acmekit.client.solvers.accountbound import DnsPersistSolver
from acmekit.client.transport import AsgiTransport
from acmekit.fleet.delegation import AcmekitDnsProvider
from acmekit.protocol import dnsaccount
from acmekit.protocol.challenges import dns01_txt_value
from acmekit.protocol.messages import ChallengeType, Identifier
from acmekit.protocol.problems import AcmeError
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import new_key
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle

DIRECTORY = "https://ca.test/directory"
_serial = itertools.count()
ACME = "urn:ietf:params:acme:error:"

Publish = Callable[[DnsServerHandle, str, str], Awaitable[None]]


def _zone(tag: str) -> str:
    return f"{tag}{next(_serial)}-{int(time.time() * 1000) % 10**8}.bad.test"


@pytest.fixture
async def bca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    config = replace(
        ca_config, dns_persist_01=True, dns_account_01=True, caa_identities=("ca.bad.test",)
    )
    assembly = assemble(config)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


@pytest.fixture
async def client(bca: Assembly) -> AsyncIterator[Client]:
    async with Client(DIRECTORY, new_key(), transport=AsgiTransport(bca.app)) as c:
        await c.register()
        yield c


async def _oversized(dns: DnsServerHandle, owner: str, good: str) -> None:
    await dns.set_txt(owner, good + "; pad=" + "x" * 1500)


async def _control(dns: DnsServerHandle, owner: str, good: str) -> None:
    await dns.set_txt(owner, good + "\x07\x1b")


async def _fifty(dns: DnsServerHandle, owner: str, good: str) -> None:
    for i in range(50):
        await dns.set_txt(owner, f"ca{i}.example; accounturi=https://ca{i}.example/a/{i}")


async def _loop(dns: DnsServerHandle, owner: str, good: str) -> None:
    provider = AcmekitDnsProvider(dns.api_url)
    hop = "hop." + owner.split(".", 1)[1]
    await provider.set_cname(owner, hop)
    await provider.set_cname(hop, owner)


# (what is published, the problem type, words of its detail)
CASES: dict[str, tuple[Publish, str, tuple[str, ...]]] = {
    "oversized": (_oversized, "malformed", ("longer than 1024",)),
    "control-characters": (_control, "malformed", ("control",)),
    "fifty-records": (_fifty, "unauthorized", ("another CA",)),
    "cname-loop": (_loop, "dns", ("CNAME", "SERVFAIL")),
}


async def _problem(client: Client, name: str, solvers: dict[ChallengeType, Solver]) -> dict:  # type: ignore[type-arg]
    with pytest.raises(AcmeError) as err:
        await client.issue([name], solvers, make_csr(name)[1])
    doc = err.value.problem.to_json()
    subs = doc.get("subproblems") or [doc]
    first = subs[0]
    assert isinstance(first, dict)
    return first


def _clear(problem: dict, kind: str, words: tuple[str, ...]) -> None:  # type: ignore[type-arg]
    assert problem["type"] == ACME + kind, problem
    assert any(w in str(problem["detail"]) for w in words), problem
    assert int(problem.get("status", 400)) < 500, problem


@pytest.mark.parametrize("case", list(CASES))
async def test_dns_persist_01(client: Client, dns_server: DnsServerHandle, case: str) -> None:
    publish, kind, words = CASES[case]
    name = _zone(case)
    good = await client.persist_record(name)
    await publish(dns_server, good.name + ".", good.value)
    problem = await _problem(client, name, {ChallengeType.DNS_PERSIST_01: DnsPersistSolver()})
    _clear(problem, kind, words)


async def test_dns_persist_01_one_good_record_among_junk(
    client: Client, dns_server: DnsServerHandle
) -> None:
    name = _zone("onegood")
    good = await client.persist_record(name)
    await _fifty(dns_server, good.name + ".", good.value)
    await dns_server.set_txt(good.name + ".", good.value)
    solvers: dict[ChallengeType, Solver] = {ChallengeType.DNS_PERSIST_01: DnsPersistSolver()}
    issued = await client.issue([name], solvers, make_csr(name)[1])
    assert issued.fullchain_pem.startswith("-----BEGIN CERTIFICATE-----")


class JunkAccountSolver:
    """A client that publishes, at its dns-account-01 name, `publish`'s junk (given the
    right value to spoil) through acmekit dns's API instead of the right record."""

    def __init__(self, dns: DnsServerHandle, account_url: str, publish: Publish) -> None:
        self.dns, self.account_url, self.publish = dns, account_url, publish

    async def present(self, identifier: Identifier, challenge: Challenge, ka: str) -> None:
        owner = dnsaccount.record_name(identifier.value, self.account_url) + "."
        await self.publish(self.dns, owner, dns01_txt_value(ka))

    async def cleanup(self, identifier: Identifier, challenge: Challenge, ka: str) -> None:
        """Left for the next case to find nothing of it: each case has its own name."""


# dns-account-01's value is dns-01's digest: junk is an incorrect response, not a syntax
# error; the loop is a dns problem as for dns-persist-01.
ACCOUNT_CASES = {
    "oversized": ("incorrectResponse", ("Incorrect TXT record",)),
    "control-characters": ("incorrectResponse", ("Incorrect TXT record",)),
    "fifty-records": ("incorrectResponse", ("and 4", "more")),
    "cname-loop": ("dns", ("CNAME", "SERVFAIL")),
}


@pytest.mark.parametrize("case", list(ACCOUNT_CASES))
async def test_dns_account_01(client: Client, dns_server: DnsServerHandle, case: str) -> None:
    kind, words = ACCOUNT_CASES[case]
    assert client.account_url is not None
    solver = JunkAccountSolver(dns_server, client.account_url, CASES[case][0])
    problem = await _problem(client, _zone("acct-" + case), {ChallengeType.DNS_ACCOUNT_01: solver})
    _clear(problem, kind, words)

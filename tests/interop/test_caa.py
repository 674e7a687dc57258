"""CAA checking against real DNS servers on loopback (RFC 8659 §3 tree climbing, §4 rules).

Our `acmekit dns` serves the CAA records (its `/add-caa` call); stub servers give SERVFAIL
and silence; a small server that answers CNAMEs without chasing them (as an authoritative
server does for an out-of-zone target) shows the checker, and the validation's lookups
that share its CNAME chase, ask for the target themselves; and
Debian's pebble-challtestsrv shows the checker reads another server's CAA too.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.caa import CaaChecker, CaaRecord
from acmekit.server.validation.resolve import MAX_CNAME_HOPS, DnsClient
from acmekit_testkit.challtestsrv import running_challtestsrv
from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server
from acmekit_testkit.stubdns import stub_dns

US = "ca.acmekit.test"
OTHER = "other-ca.test"
ACCOUNT = "https://ca.acmekit.test/acme/acct/1"


@pytest.fixture(params=["nxdomain", "default-address"])
async def dns_server(request: pytest.FixtureRequest) -> AsyncIterator[DnsServerHandle]:
    """Without a default address unknown names are NXDOMAIN; with one they exist (NODATA)."""
    default = None if request.param == "nxdomain" else "127.0.0.1"
    async with running_dns_server(default_ipv4=default) as server:
        yield server


class _OneHopServer(asyncio.DatagramProtocol):
    """Answers from fixed records without chasing CNAMEs, as an authoritative server for
    one zone does when the target lies elsewhere; unknown names are NXDOMAIN."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        texts = self.records.get(question.name.to_text().lower())
        if texts is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        for text in texts or []:
            rrset = dns.rrset.from_text(question.name, 60, "IN", *text.split(" ", 1))
            if rrset.rdtype in (question.rdtype, dns.rdatatype.CNAME):
                reply.answer.append(rrset)
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)


@asynccontextmanager
async def one_hop_server(records: dict[str, list[str]]) -> AsyncIterator[tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _OneHopServer(records), local_addr=("127.0.0.1", 0)
    )
    try:
        yield "127.0.0.1", transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def post_json(url: str, doc: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()


def checker(server: DnsServerHandle, timeout: float = 5.0) -> CaaChecker:
    return CaaChecker(("127.0.0.1", server.dns_port), (US,), timeout=timeout)


async def add_caa(server: DnsServerHandle, host: str, *policies: tuple[str, str]) -> None:
    doc = {"host": host, "policies": [{"tag": t, "value": v} for t, v in policies]}
    await server.post("/add-caa", doc)


async def refusal(caa: CaaChecker, name: str, *, wildcard: bool = False, **kw: str) -> AcmeError:
    """Records forbid issuance: a caa problem (403)."""
    err = await failure(caa, name, wildcard=wildcard, **kw)
    assert err.problem.type == ProblemType.CAA
    assert err.problem.status == 403
    return err


async def lookup_failure(caa: CaaChecker, name: str, *, wildcard: bool = False) -> AcmeError:
    """CAA could not be looked up: a dns problem, and still no issuance."""
    err = await failure(caa, name, wildcard=wildcard)
    assert err.problem.type == ProblemType.DNS
    assert err.problem.detail.startswith(f"DNS problem: could not check CAA records for {name}")
    return err


async def failure(caa: CaaChecker, name: str, *, wildcard: bool = False, **kw: str) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        await caa.check(
            name,
            wildcard=wildcard,
            account_uri=kw.get("account_uri", ACCOUNT),
            method=kw.get("method", "http-01"),
        )
    return info.value


async def check(caa: CaaChecker, name: str, *, wildcard: bool = False, **kw: str) -> None:
    await caa.check(
        name,
        wildcard=wildcard,
        account_uri=kw.get("account_uri", ACCOUNT),
        method=kw.get("method", "http-01"),
    )


async def test_record_at_the_name_blocks_another_ca(dns_server: DnsServerHandle) -> None:
    await add_caa(dns_server, "blocked.example.test.", ("issue", OTHER))
    caa = checker(dns_server)
    assert await caa.relevant_records("blocked.example.test") == (
        "blocked.example.test",
        [CaaRecord(0, "issue", OTHER)],
    )
    err = await refusal(caa, "blocked.example.test")
    assert err.problem.identifier == {"type": "dns", "value": "blocked.example.test"}
    detail = err.problem.detail
    assert "CAA record set for blocked.example.test" in detail
    assert f'0 issue "{OTHER}"' in detail
    assert f"names another CA ({OTHER})" in detail


async def test_record_at_the_name_naming_us_permits(dns_server: DnsServerHandle) -> None:
    await add_caa(dns_server, "mine.example.test.", ("issue", US), ("iodef", "mailto:a@b.test"))
    await check(checker(dns_server), "mine.example.test")


async def test_parent_record_found_by_tree_climbing(dns_server: DnsServerHandle) -> None:
    await add_caa(dns_server, "example.test.", ("issue", OTHER))
    caa = checker(dns_server)
    owner, records = await caa.relevant_records("www.deep.example.test")
    assert owner == "example.test"
    assert records == [CaaRecord(0, "issue", OTHER)]
    err = await refusal(caa, "www.deep.example.test")
    assert err.problem.identifier == {"type": "dns", "value": "www.deep.example.test"}
    assert "CAA record set for example.test" in err.problem.detail


@pytest.mark.parametrize("default", [None, "127.0.0.1"], ids=["nxdomain", "default-address"])
async def test_tree_climbing_reaches_the_tld(default: str | None) -> None:
    # A record at a TLD is published only where the server is told it serves that zone.
    async with running_dns_server(default_ipv4=default, zones=("tld",)) as server:
        await add_caa(server, "tld.", ("issue", ";"))
        caa = checker(server)
        assert await caa.relevant_records("a.b.tld") == ("tld", [CaaRecord(0, "issue", ";")])
        err = await refusal(caa, "a.b.tld")
    assert "forbids issuance by any CA" in err.problem.detail


async def test_subdomain_record_overrides_the_parent(dns_server: DnsServerHandle) -> None:
    await add_caa(dns_server, "example.test.", ("issue", OTHER))
    await add_caa(dns_server, "shop.example.test.", ("issue", US))
    caa = checker(dns_server)
    await check(caa, "shop.example.test")
    await check(caa, "cart.shop.example.test")  # nearest set is shop's, not example.test's
    assert (await caa.relevant_records("cart.shop.example.test"))[0] == "shop.example.test"
    await refusal(caa, "www.example.test")


async def test_subdomain_deny_all_overrides_a_permissive_parent(
    dns_server: DnsServerHandle,
) -> None:
    await add_caa(dns_server, "example.test.", ("issue", US))
    await add_caa(dns_server, "locked.example.test.", ("issue", ";"))
    caa = checker(dns_server)
    await check(caa, "example.test")
    err = await refusal(caa, "locked.example.test")
    assert "forbids issuance by any CA" in err.problem.detail


async def test_no_records_anywhere_permits(dns_server: DnsServerHandle) -> None:
    caa = checker(dns_server)
    assert await caa.relevant_records("nothing.here.test") == ("nothing.here.test", [])
    await check(caa, "nothing.here.test")
    await check(caa, "nothing.here.test", wildcard=True)


async def test_issuewild_is_used_for_wildcards(dns_server: DnsServerHandle) -> None:
    await add_caa(dns_server, "wild.test.", ("issue", US), ("issuewild", OTHER))
    caa = checker(dns_server)
    await check(caa, "wild.test")
    err = await refusal(caa, "wild.test", wildcard=True)
    assert err.problem.identifier == {"type": "dns", "value": "*.wild.test"}
    assert f'0 issuewild "{OTHER}"' in err.problem.detail
    await refusal(caa, "*.wild.test", wildcard=True)  # a leading "*." is taken off


async def test_issuewild_permits_wildcard_where_issue_does_not(
    dns_server: DnsServerHandle,
) -> None:
    await add_caa(dns_server, "tame.test.", ("issue", OTHER), ("issuewild", US))
    caa = checker(dns_server)
    await check(caa, "tame.test", wildcard=True)
    await refusal(caa, "tame.test")


async def test_parameters_survive_the_wire(dns_server: DnsServerHandle) -> None:
    value = f"{US}; accounturi={ACCOUNT}; validationmethods=dns-01"
    await add_caa(dns_server, "bound.test.", ("issue", value))
    caa = checker(dns_server)
    await check(caa, "bound.test", method="dns-01")
    err = await refusal(caa, "bound.test", method="http-01")
    assert "validationmethods" in err.problem.detail
    err = await refusal(caa, "bound.test", method="dns-01", account_uri=ACCOUNT + "0")
    assert "accounturi" in err.problem.detail


async def test_names_compare_case_insensitively(dns_server: DnsServerHandle) -> None:
    await add_caa(dns_server, "Mixed.Example.TEST.", ("issue", "CA.ACMEKIT.TEST"))
    await check(checker(dns_server), "mixed.EXAMPLE.test")


async def test_unknown_non_critical_tag_is_ignored(dns_server: DnsServerHandle) -> None:
    await add_caa(dns_server, "future.test.", ("issue", US), ("futuretag", "anything"))
    await check(checker(dns_server), "future.test")


async def test_cname_target_records_are_used(dns_server: DnsServerHandle) -> None:
    await dns_server.post("/set-cname", {"host": "alias.example.test.", "target": "real.cdn.test."})
    await add_caa(dns_server, "real.cdn.test.", ("issue", OTHER))
    caa = checker(dns_server)
    owner, records = await caa.relevant_records("alias.example.test")
    assert (owner, records) == ("alias.example.test", [CaaRecord(0, "issue", OTHER)])
    await refusal(caa, "alias.example.test")


async def test_cname_only_answer_is_followed_to_the_target() -> None:
    records = {
        "alias.example.test.": ["CNAME real.cdn.test."],
        "example.test.": [f'CAA 0 issue "{US}"'],
        "real.cdn.test.": [f'CAA 0 issue "{OTHER}"'],
    }
    async with one_hop_server(records) as server:
        caa = CaaChecker(server, (US,), timeout=2.0)
        owner, found = await caa.relevant_records("alias.example.test")
        assert (owner, found) == ("alias.example.test", [CaaRecord(0, "issue", OTHER)])
        await refusal(caa, "alias.example.test")
        await check(caa, "www.example.test")


async def test_cname_loop_fails_closed() -> None:
    records = {"a.loop.test.": ["CNAME b.loop.test."], "b.loop.test.": ["CNAME a.loop.test."]}
    async with one_hop_server(records) as server:
        caa = CaaChecker(server, (US,), timeout=2.0)
        err = await lookup_failure(caa, "a.loop.test")
    assert "CNAMEs" in err.problem.detail


async def test_validation_lookups_chase_cnames_the_same_way() -> None:
    records = {
        "_acme-challenge.a.test.": ["CNAME v.other.test."],
        "v.other.test.": ['TXT "token"'],
        "a.loop.test.": ["CNAME b.loop.test."],
        "b.loop.test.": ["CNAME a.loop.test."],
    }
    async with one_hop_server(records) as server:
        lookups = DnsClient(server, timeout=2.0)
        found = await lookups.query("_acme-challenge.a.test", dns.rdatatype.TXT)
        assert found.values == ("token",)
        with pytest.raises(AcmeError) as info:
            await lookups.query("a.loop.test", dns.rdatatype.TXT)
    assert info.value.problem.type == ProblemType.DNS
    assert f"more than {MAX_CNAME_HOPS} CNAMEs" in info.value.problem.detail


async def test_servfail_fails_closed() -> None:
    async with stub_dns(dns.rcode.SERVFAIL) as server:
        caa = CaaChecker(server, (US,), timeout=2.0)
        err = await lookup_failure(caa, "www.example.test")
    assert err.problem.identifier == {"type": "dns", "value": "www.example.test"}
    assert "SERVFAIL" in err.problem.detail


async def test_silent_resolver_fails_closed() -> None:
    async with stub_dns(None) as server:
        caa = CaaChecker(server, (US,), timeout=0.3)
        err = await lookup_failure(caa, "www.example.test", wildcard=True)
    assert err.problem.identifier == {"type": "dns", "value": "*.www.example.test"}
    assert "timeout" in err.problem.detail


async def test_nxdomain_everywhere_permits() -> None:
    async with stub_dns(dns.rcode.NXDOMAIN) as server:
        caa = CaaChecker(server, (US,), timeout=2.0)
        assert await caa.relevant_records("a.b.test") == ("a.b.test", [])
        await check(caa, "a.b.test")


async def test_records_served_by_pebble_challtestsrv(tmp_path: Path) -> None:
    with running_challtestsrv(tmp_path) as srv:
        doc = {"host": "example.test.", "policies": [{"tag": "issue", "value": OTHER}]}
        await asyncio.to_thread(post_json, srv.management_url + "/add-caa", doc)
        caa = CaaChecker(("127.0.0.1", srv.dns_port), (US,), timeout=5.0)
        assert await caa.relevant_records("www.example.test") == (
            "example.test",
            [CaaRecord(0, "issue", OTHER)],
        )
        await refusal(caa, "www.example.test")
        await check(caa, "elsewhere.test")

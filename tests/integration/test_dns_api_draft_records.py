"""`acmekit dns`'s API sets and clears the draft challenges' records: dns-persist-01's
`_validation-persist.NAME` (long values split into 255-octet strings, several CAs'
records side by side) and dns-account-01's `_<label>._acme-challenge.NAME` (one account's
record cleared, another's kept). Bad input is a clear 4xx problem or served as given,
never a 5xx: an oversized value, control characters, 50 records at one name, a CNAME loop.
Real UDP and TCP queries on loopback."""

from __future__ import annotations

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.TXT

from acmekit.protocol import dnsaccount, dnspersist
from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server

HASH = "https://ca.example/acme/account-hash/sha-256/5SQm7n6tPh2-PlLbCKGnViTXX5z19SCN4cPGQHSk-kw"
ONE = "ca.example; accounturi=" + HASH + "; policy=wildcard; persistUntil=4070908800"
TWO = "other.example; accounturi=https://other.example/h/sha-256/" + "A" * 43
ACCOUNT_A = "https://ca.example/acme/acct/1"
ACCOUNT_B = "https://ca.example/acme/acct/2"
ACME_TXT = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"


async def _txt(
    server: DnsServerHandle, name: str, *, tcp: bool = False
) -> tuple[int, list[list[bytes]]]:
    """(rcode, each TXT record's character-strings)."""
    q = dns.message.make_query(name, "TXT", use_edns=0)
    if tcp:
        r = await dns.asyncquery.tcp(q, server.host, port=server.dns_port, timeout=5)
    else:
        r = await dns.asyncquery.udp(q, server.host, port=server.dns_port, timeout=5)
    found = []
    for rrset in r.answer:
        for rd in rrset:
            if isinstance(rd, dns.rdtypes.ANY.TXT.TXT):
                found.append(list(rd.strings))
    return r.rcode(), found


def _joined(records: list[list[bytes]]) -> list[str]:
    return sorted(b"".join(s).decode() for s in records)


async def _post_raw(server: DnsServerHandle, path: str, doc: object) -> aiohttp.ClientResponse:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.api_url + path, json=doc) as resp,
    ):
        await resp.read()
        return resp


async def test_persist_records_of_two_cas_set_split_and_cleared() -> None:
    owner = dnspersist.record_name("shop.api.test") + "."
    long = ONE + "; note=" + "n" * 600  # several character-strings, one UDP answer
    async with running_dns_server(default_ipv4=None) as server:
        await server.set_txt(owner, long)
        await server.set_txt(owner, TWO)
        for tcp in (False, True):
            rcode, records = await _txt(server, owner, tcp=tcp)
            assert rcode == dns.rcode.NOERROR
            assert _joined(records) == sorted([long, TWO])
            assert all(len(s) <= 255 for r in records for s in r)
            assert max(len(r) for r in records) == -(-len(long) // 255)
        await server.clear_txt(owner)
        rcode, records = await _txt(server, owner)
        assert records == []


async def test_account_label_records_one_cleared_the_other_kept() -> None:
    mine = dnsaccount.record_name("shop.api.test", ACCOUNT_A) + "."
    theirs = dnsaccount.record_name("shop.api.test", ACCOUNT_B) + "."
    assert mine != theirs
    async with running_dns_server(default_ipv4=None) as server:
        await server.set_txt(mine, ACME_TXT)
        await server.set_txt(theirs, ACME_TXT[::-1])
        await server.clear_txt(mine)
        assert (await _txt(server, mine))[1] == []
        assert _joined((await _txt(server, theirs))[1]) == [ACME_TXT[::-1]]


async def test_bad_input_is_a_clear_failure_never_a_5xx() -> None:
    owner = dnspersist.record_name("junk.api.test") + "."
    async with running_dns_server(default_ipv4=None) as server:
        # Oversized: refused as malformed (8 character-strings of 255 octets at most).
        resp = await _post_raw(server, "/set-txt", {"host": owner, "value": "x" * 2041})
        assert resp.status == 400 and resp.content_type == "application/problem+json"
        # Control characters: DNS TXT carries any octets; published exactly as given
        # (the CA's validation is what refuses such a record, as malformed).
        odd = ONE + "\x07\x00\x1b"
        assert (await _post_raw(server, "/set-txt", {"host": owner, "value": odd})).status == 200
        assert _joined((await _txt(server, owner, tcp=True))[1]) == [odd]
        # 50 records at one name: too many for a plain UDP answer; all of them over TCP.
        for i in range(49):
            await server.set_txt(owner, f"ca{i}.example; accounturi=https://ca{i}.example/a/{i}")
        q = dns.message.make_query(owner, "TXT", use_edns=0)
        udp = await dns.asyncquery.udp(q, server.host, port=server.dns_port, timeout=5)
        assert udp.flags & dns.flags.TC
        assert len((await _txt(server, owner, tcp=True))[1]) == 50
        # A CNAME loop: accepted (a zone may hold one) and answered with the chain once
        # round, no TXT (a validator sees the loop and stops: the CA's own tests).
        loop = dnspersist.record_name("loop.api.test") + "."
        await server.post("/set-cname", {"host": loop, "target": "a.loop.api.test."})
        await server.post("/set-cname", {"host": "a.loop.api.test.", "target": loop})
        q = dns.message.make_query(loop, "TXT", use_edns=0)
        answer = await dns.asyncquery.udp(q, server.host, port=server.dns_port, timeout=5)
        assert answer.rcode() == dns.rcode.NOERROR
        assert [r.rdtype for r in answer.answer] == [dns.rdatatype.CNAME] * 2
        # The server still answers everything else.
        assert len((await _txt(server, owner, tcp=True))[1]) == 50

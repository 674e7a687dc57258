"""The DNS server's API takes an IPv6 address without a zone index: `ipaddress` reads
"fe80::1%eth0" (RFC 4007 §11; Python 3.9+), and a scope of any text ("%\\u212a"), which
no AAAA record can hold. `/add-aaaa` then failed past the malformed problem (a 500), and
`/set-default-ipv6` stored it, so that every AAAA answer built from it failed."""

from __future__ import annotations

import aiohttp
import dns.asyncquery
import dns.message
import pytest

from acmekit_testkit.dnsserver import running_dns_server


@pytest.mark.parametrize("address", ["fe80::1%eth0", "fe80::1%\u212a"])
async def test_a_scoped_ipv6_address_is_malformed(address: str) -> None:
    async with running_dns_server() as server, aiohttp.ClientSession() as session:
        calls = [
            ("/add-aaaa", {"host": "www.x.test.", "addresses": [address]}),
            ("/set-default-ipv6", {"ip": address}),
        ]
        for path, doc in calls:
            async with session.post(server.api_url + path, json=doc) as resp:
                assert resp.status == 400
                problem = await resp.json(content_type=None)
            assert problem["type"] == "urn:ietf:params:acme:error:malformed"
        async with session.post(server.api_url + "/set-default-ipv6", json={"ip": "fe80::1"}):
            pass
        q = dns.message.make_query("other.x.test.", "AAAA")
        got = await dns.asyncquery.udp(q, server.host, port=server.dns_port, timeout=5)
        assert [rd.address for rrset in got.answer for rd in rrset] == ["fe80::1"]

"""The DNS server's API over loopback: an owner name that is not ASCII is malformed (it
was mapped through IDNA into another, ASCII, name: a fullwidth x (U+FF58) made x.test),
and an acme-dns TXT value is 43 base64url characters exactly (a final newline passed
`re.match` with `$`)."""

from __future__ import annotations

import aiohttp
import dns.asyncquery
import dns.message

from acmekit.dns.registry import subdomain_is_wellformed
from acmekit.dns.store import txt_value
from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server


async def txts(server: DnsServerHandle, name: str) -> list[str]:
    q = dns.message.make_query(name, "TXT")
    got = await dns.asyncquery.udp(q, server.host, port=server.dns_port, timeout=5)
    return sorted(txt_value(rd) for rrset in got.answer for rd in rrset)


async def test_a_non_ascii_owner_name_is_malformed() -> None:
    async with running_dns_server() as server, aiohttp.ClientSession() as session:
        for host in ["_acme-challenge.\uff58.test.", "_acme-challenge.\u212a.test."]:
            doc = {"host": host, "value": "v"}
            async with session.post(server.api_url + "/set-txt", json=doc) as resp:
                assert resp.status == 400
                problem = await resp.json(content_type=None)
            assert problem["type"] == "urn:ietf:params:acme:error:malformed"
            assert "not ASCII" in problem["detail"]
        doc = {"host": "www.x.test.", "target": "\uff58.test."}
        async with session.post(server.api_url + "/set-cname", json=doc) as resp:
            assert resp.status == 400
        await server.set_txt("_acme-challenge.X.test.", "ascii")
        assert await txts(server, "_acme-challenge.x.test.") == ["ascii"]


async def test_an_acme_dns_value_with_a_final_newline_is_refused() -> None:
    async with running_dns_server() as server, aiohttp.ClientSession() as session:
        async with session.post(server.api_url + "/register") as resp:
            reg = await resp.json()
        headers = {"X-Api-User": reg["username"], "X-Api-Key": reg["password"]}
        for txt, status in [("a" * 43 + "\n", 400), ("b" * 43, 200)]:
            doc = {"subdomain": reg["subdomain"], "txt": txt}
            async with session.post(server.api_url + "/update", json=doc, headers=headers) as r:
                assert r.status == status
        assert await txts(server, reg["fulldomain"] + ".") == ["b" * 43]


def test_an_acme_dns_subdomain_with_a_final_newline_is_not_wellformed() -> None:
    assert subdomain_is_wellformed("a-subdomain")
    assert not subdomain_is_wellformed("a-subdomain\n")

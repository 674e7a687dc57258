"""A wildcard at a zone's apex and the zone's NS host (RFC 4592 §2.2, §3.3.1): the NS
host exists with its synthesized address, so `*.<zone>` answers neither for it nor
below it, and the NS glue keeps the server's address, as the zone transfer has it."""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype

from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server


async def ask(server: DnsServerHandle, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=server.dns_port, timeout=5)


def addresses(rrsets: list[dns.rrset.RRset], rdtype: int = dns.rdatatype.A) -> list[str]:
    return sorted(rd.to_text() for rrset in rrsets if rrset.rdtype == rdtype for rd in rrset)


async def test_an_apex_wildcard_leaves_the_ns_host_alone() -> None:
    async with running_dns_server(None, zones=("x.test",)) as server:
        await server.post("/add-a", {"host": "*.x.test", "addresses": ["10.0.0.1"]})
        await server.set_txt("*.x.test", "wild")

        host = await ask(server, "ns1.x.test.", "A")
        assert addresses(host.answer) == ["127.0.0.1"]
        glue = await ask(server, "x.test.", "NS")
        assert addresses(glue.additional) == ["127.0.0.1"]
        nodata = await ask(server, "ns1.x.test.", "TXT")
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        for rdtype in ("A", "TXT"):
            below = await ask(server, "foo.ns1.x.test.", rdtype)
            assert below.rcode() == dns.rcode.NXDOMAIN and not below.answer

        other = await ask(server, "other.x.test.", "A")  # the wildcard still answers here
        assert addresses(other.answer) == ["10.0.0.1"]

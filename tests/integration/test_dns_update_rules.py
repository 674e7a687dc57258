"""RFC 2136 rules on `acmekit dns`: prerequisites see the synthesized SOA, NS and NS host
(§2.4.1, §2.4.4); a name in a deeper zone of ours is NOTZONE (§3.4.1.3); an UPDATE is
one change under one serial, whole or not at all (§3.4.2, §3.6), with or without a
shared database; and UPDATE, like the API, publishes nothing at the root or a TLD."""

from __future__ import annotations

import base64
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import dns.tsig
import dns.update
import pytest

from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server

SECRET = base64.b64encode(b"update key of the acme clients!!").decode()
KEY = dns.tsig.Key("upd", SECRET, dns.tsig.HMAC_SHA256)


def update(zone: str) -> dns.update.UpdateMessage:
    return dns.update.UpdateMessage(zone, keyring={KEY.name: KEY}, keyname=KEY.name)


async def send(server: DnsServerHandle, message: dns.update.UpdateMessage) -> str:
    reply = await dns.asyncquery.tcp(message, "127.0.0.1", port=server.dns_port, timeout=5)
    return dns.rcode.to_text(reply.rcode())


async def ask(server: DnsServerHandle, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=server.dns_port, timeout=5)


async def txt(server: DnsServerHandle, name: str) -> list[str]:
    reply = await ask(server, name, "TXT")
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


async def serial(server: DnsServerHandle, zone: str = "x.test.") -> int:
    return int((await ask(server, zone, "SOA")).answer[0][0].serial)


PREREQUISITES = {  # RFC 2136 §2.4: (method of dnspython's UpdateMessage, arguments)
    "soa-at-apex": ("present", ("x.test.", "SOA"), "NOERROR"),
    "ns-at-apex": ("present", ("x.test.", "NS"), "NOERROR"),
    "ns-host-address": ("present", ("ns1.x.test.", "A"), "NOERROR"),
    "ns-host-in-use": ("present", ("ns1.x.test.",), "NOERROR"),
    "apex-in-use": ("present", ("x.test.",), "NOERROR"),
    "ns-host-not-absent": ("absent", ("ns1.x.test.",), "YXDOMAIN"),
    "soa-not-absent": ("absent", ("x.test.", "SOA"), "YXRRSET"),
    "absent-name": ("present", ("nx.x.test.",), "NXDOMAIN"),
}


@pytest.mark.parametrize("case", PREREQUISITES)
async def test_prerequisites_see_the_synthesized_records(case: str) -> None:
    method, args, expected = PREREQUISITES[case]
    async with running_dns_server(None, zones=("x.test",), tsig_keys=(f"upd:{SECRET}",)) as server:
        message = update("x.test.")
        getattr(message, method)(*args)
        message.add("_acme-challenge.p.x.test.", 0, "TXT", '"after-prerequisite"')
        assert await send(server, message) == expected
        published = await txt(server, "_acme-challenge.p.x.test.")
        assert published == (['"after-prerequisite"'] if expected == "NOERROR" else [])


async def test_a_name_in_a_deeper_zone_is_notzone() -> None:
    zones = ("x.test", "sub.x.test")
    async with running_dns_server(None, zones=zones, tsig_keys=(f"upd:{SECRET}",)) as server:
        message = update("x.test.")
        message.add("_acme-challenge.a.sub.x.test.", 0, "TXT", '"wrong-zone"')
        assert await send(server, message) == "NOTZONE"
        prerequisite = update("x.test.")
        prerequisite.present("_acme-challenge.a.sub.x.test.")
        prerequisite.add("_acme-challenge.a.x.test.", 0, "TXT", '"right-zone"')
        assert await send(server, prerequisite) == "NOTZONE"
        assert await txt(server, "_acme-challenge.a.sub.x.test.") == []
        message = update("sub.x.test.")
        message.add("_acme-challenge.a.sub.x.test.", 0, "TXT", '"right-zone"')
        assert await send(server, message) == "NOERROR"


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "db"])
async def test_one_update_is_one_serial(shared: bool, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'dns.db'}" if shared else None
    async with running_dns_server(
        None, zones=("x.test",), tsig_keys=(f"upd:{SECRET}",), db=db
    ) as server:
        await server.set_txt("_acme-challenge.old.x.test", "old")
        before = await serial(server)
        message = update("x.test.")
        for n in range(5):
            message.add(f"_acme-challenge.n{n}.x.test.", 0, "TXT", f'"v{n}"')
        message.delete("_acme-challenge.old.x.test.", "TXT")
        assert await send(server, message) == "NOERROR"
        assert await serial(server) == before + 1
        assert await txt(server, "_acme-challenge.n4.x.test.") == ['"v4"']
        assert await txt(server, "_acme-challenge.old.x.test.") == []

        # in order (RFC 2136 §3.4.2): added, then deleted in the same message: not there
        message = update("x.test.")
        message.add("_acme-challenge.n0.x.test.", 0, "TXT", '"brief"')
        message.delete("_acme-challenge.n0.x.test.", "TXT", '"brief"')
        assert await send(server, message) == "NOERROR"
        assert await txt(server, "_acme-challenge.n0.x.test.") == ['"v0"']
        assert await serial(server) == before + 1  # nothing changed: no new serial


@pytest.mark.parametrize("zone", [".", "com."], ids=["root", "tld"])
async def test_update_publishes_nothing_at_the_root_or_a_tld(zone: str) -> None:
    async with running_dns_server(None, tsig_keys=(f"upd:{SECRET}",)) as server:
        message = update(zone)
        message.add(zone, 0, "TXT", '"amplifier"')
        assert await send(server, message) == "REFUSED"
        assert await txt(server, zone) == []
        below = update("example.com.")
        below.add("_acme-challenge.example.com.", 0, "TXT", '"fine"')
        assert await send(server, below) == "NOERROR"

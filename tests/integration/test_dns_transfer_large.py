"""Zone transfers of large records from `acmekit dns` (RFC 5936 §2.2): messages are cut
by size, so 32 TXT values of 2040 octets (the API's largest) at 32 names come through
AXFR and IXFR; and a name whose records would not fit in one message is refused its
next record, through the API (400) and through UPDATE (REFUSED), so every RRset can
still be sent."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.tsig
import dns.update
import dns.zone

from acmekit.dns.store import RecordType, make_rdata
from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server

SECRET = base64.b64encode(b"transfer key of the secondaries!").decode()
UPD_SECRET = base64.b64encode(b"update key of the acme clients!!").decode()
XFR = dns.tsig.Key("xfr", SECRET, dns.tsig.HMAC_SHA256)
UPD = dns.tsig.Key("upd", UPD_SECRET, dns.tsig.HMAC_SHA256)
NAMES = 32
LARGEST = 2040  # the API's largest TXT value (docs/dns.md, /set-txt)


def txt(value: str) -> dns.rdata.Rdata:
    return make_rdata(RecordType.TXT, value)  # in 255-octet strings


def server_args() -> dict[str, object]:
    return {
        "zones": ("x.test",),
        "tsig_keys": (f"xfr:{SECRET}", f"upd:{UPD_SECRET}"),
        "allow_transfer": ("xfr",),
    }


def _transfer(port: int, serial: int | None) -> list[dns.message.Message]:
    kind = dns.rdatatype.AXFR if serial is None else dns.rdatatype.IXFR
    return list(
        dns.query.xfr(
            "127.0.0.1", "x.test.", rdtype=kind, serial=serial or 0, port=port,
            keyring={XFR.name: XFR}, keyname=XFR.name, lifetime=20,
        )
    )  # fmt: skip


async def transfer(server: DnsServerHandle, serial: int | None) -> list[dns.message.Message]:
    """AXFR (serial None) or IXFR from `serial`, in a thread: the server runs here."""
    return await asyncio.to_thread(_transfer, server.dns_port, serial)


def txt_values(messages: list[dns.message.Message]) -> set[bytes]:
    return {
        b"".join(rd.strings)
        for m in messages
        for rrset in m.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rd in rrset
    }


async def soa_serial(server: DnsServerHandle) -> int:
    query = dns.message.make_query("x.test.", "SOA")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=server.dns_port, timeout=5)
    return int(reply.answer[0][0].serial)


async def test_large_records_at_many_names_transfer_by_axfr_and_ixfr() -> None:
    async with running_dns_server(None, **server_args()) as server:  # type: ignore[arg-type]
        before = await soa_serial(server)
        values = {f"{n:02d}".ljust(LARGEST, "p").encode() for n in range(NAMES)}
        for n, value in enumerate(sorted(values)):
            await server.set_txt(f"_validation-persist.n{n}.x.test", value.decode())
        axfr = await transfer(server, None)
        assert all(m.rcode() == dns.rcode.NOERROR for m in axfr)
        assert len(axfr) > 1 and txt_values(axfr) == values
        ixfr = await transfer(server, before)
        assert all(m.rcode() == dns.rcode.NOERROR for m in ixfr)
        assert len(ixfr) > 1 and txt_values(ixfr) == values


async def post_status(server: DnsServerHandle, host: str, value: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.api_url + "/set-txt", json={"host": host, "value": value}) as resp,
    ):
        return resp.status, await resp.text()


async def test_one_name_holds_no_more_than_one_message_carries() -> None:
    name = "_validation-persist.big.x.test."
    async with running_dns_server(None, **server_args()) as server:  # type: ignore[arg-type]
        answers = []
        for n in range(40):
            answers.append(await post_status(server, name, f"{n:02d}".ljust(2000, "q")))
        kept = [status for status, _ in answers].count(200)
        assert 0 < kept < 40
        assert all(status == 400 for status, _ in answers[kept:])
        assert "octets" in answers[kept][1] and "one DNS message" in answers[kept][1]

        query = dns.message.make_query(name, "TXT")
        reply = await dns.asyncquery.tcp(query, "127.0.0.1", port=server.dns_port, timeout=5)
        assert not reply.flags & dns.flags.TC and len(reply.answer[0]) == kept

        update = dns.update.UpdateMessage("x.test.", keyring={UPD.name: UPD}, keyname=UPD.name)
        update.delete(name, txt("00".ljust(2000, "q")))  # one out, two in: one too many
        update.add(name, 0, txt("xx".ljust(2000, "q")))
        update.add(name, 0, txt("yy".ljust(2000, "q")))
        reply = await dns.asyncquery.tcp(update, "127.0.0.1", port=server.dns_port, timeout=5)
        assert reply.rcode() == dns.rcode.REFUSED
        reply = await dns.asyncquery.tcp(query, "127.0.0.1", port=server.dns_port, timeout=5)
        assert len(reply.answer[0]) == kept  # nothing of the refused UPDATE was applied
        assert await transfer(server, None)


async def test_a_list_that_would_not_fit_adds_nothing() -> None:
    policies = [{"tag": "issue", "value": f"{n:02d}".ljust(1024, "c")} for n in range(60)]
    async with running_dns_server(None, **server_args()) as server:  # type: ignore[arg-type]
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                server.api_url + "/add-caa", json={"host": "x.test", "policies": policies}
            ) as resp,
        ):
            assert resp.status == 400 and "one DNS message" in await resp.text()
        query = dns.message.make_query("x.test.", "CAA")
        reply = await dns.asyncquery.tcp(query, "127.0.0.1", port=server.dns_port, timeout=5)
        assert reply.answer == []  # none of them, not the first 57


def _edns_axfr(port: int) -> dns.zone.Zone:
    """AXFR asked as dig and BIND ask it, with an OPT advertising 1232 octets: over TCP
    a message may still be 65,535 octets (RFC 6891 §7, RFC 5936 §2.2)."""
    zone = dns.zone.Zone("x.test.")
    query = dns.message.make_query("x.test.", "AXFR", use_edns=0, payload=1232)
    query.use_tsig({XFR.name: XFR}, keyname=XFR.name)
    dns.query.inbound_xfr("127.0.0.1", zone, query=query, port=port, lifetime=20)
    return zone


async def test_a_transfer_asked_with_edns_is_not_cut_to_the_udp_payload() -> None:
    async with running_dns_server(None, **server_args()) as server:  # type: ignore[arg-type]
        values = {f"{n:02d}".ljust(240, "e") for n in range(8)}  # the zone over 1232 octets
        for n, value in enumerate(sorted(values)):
            await server.set_txt(f"_acme-challenge.e{n}.x.test", value)
        zone = await asyncio.to_thread(_edns_axfr, server.dns_port)
        found = {
            b"".join(rd.strings).decode()
            for _, rdataset in zone.iterate_rdatasets(dns.rdatatype.TXT)
            for rd in rdataset
        }
        assert found == values

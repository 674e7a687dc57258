"""TSIG on `acmekit dns` beyond a good signature (RFC 8945): a signed UPDATE cannot be
replayed, nor one signed earlier be accepted after a later one (§5.2.3, BADTIME), nor
one signed further from the server's clock than 300 s, whatever fudge it claims; a
BADTIME reply is signed with the key, carries the request's Time Signed and the
server's time in Other Data (§5.3.2); a truncated MAC is FORMERR below half the hash
and BADTRUNC above it (§5.2.2.1), never BADSIG unless it is wrong."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import struct
import time
from contextlib import AbstractAsyncContextManager

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig
import dns.update
import pytest

from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server

SECRET = b"update key of the acme clients!!"
KEY = dns.tsig.Key("upd", base64.b64encode(SECRET).decode(), dns.tsig.HMAC_SHA256)
NAME = "_acme-challenge.rp.x.test."


def signed(
    message: dns.message.Message, when: int, mac_length: int = 32, fudge: int = 300
) -> bytes:
    """`message` signed with KEY as if at `when` with `fudge`, its MAC cut to `mac_length`
    octets."""
    unsigned = message.to_wire()
    rdata = dns.rdtypes.ANY.TSIG.TSIG(
        dns.rdataclass.ANY, dns.rdatatype.TSIG, KEY.algorithm, when, fudge, b"",
        message.id, 0, b"",
    )  # fmt: skip
    tsig, _ = dns.tsig.sign(unsigned, KEY, rdata, when)
    body = tsig.replace(mac=tsig.mac[:mac_length]).to_wire()
    head = struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(body))
    arcount = struct.unpack("!H", unsigned[10:12])[0] + 1
    return (
        unsigned[:10]
        + struct.pack("!H", arcount)
        + unsigned[12:]
        + KEY.name.to_wire()
        + head
        + body
    )


def adding(value: str) -> dns.update.UpdateMessage:
    message = dns.update.UpdateMessage("x.test.")
    message.add(NAME, 0, "TXT", f'"{value}"')
    return message


def deleting() -> dns.update.UpdateMessage:
    message = dns.update.UpdateMessage("x.test.")
    message.delete(NAME, "TXT")
    return message


def _exchange(port: int, wire: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(wire, ("127.0.0.1", port))
        return sock.recv(65535)


async def exchange(server: DnsServerHandle, wire: bytes) -> bytes:
    return await asyncio.to_thread(_exchange, server.dns_port, wire)


async def outcome(server: DnsServerHandle, wire: bytes) -> tuple[str, str]:
    """(RCODE, TSIG error) of the reply to `wire`."""
    reply = dns.message.from_wire(await exchange(server, wire), keyring=False)
    error = dns.rcode.to_text(reply.tsig[0].error) if reply.tsig else "-"
    return dns.rcode.to_text(reply.rcode()), error


async def published(server: DnsServerHandle) -> list[str]:
    wire = dns.message.make_query(NAME, "TXT").to_wire()
    reply = dns.message.from_wire(await exchange(server, wire))
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def server() -> AbstractAsyncContextManager[DnsServerHandle]:
    spec = f"upd:{base64.b64encode(SECRET).decode()}"
    return running_dns_server(None, zones=("x.test",), tsig_keys=(spec,))


async def test_a_captured_update_cannot_be_replayed() -> None:
    async with server() as dns_server:
        now = int(time.time())
        add = signed(adding("token1"), now - 2)
        assert await outcome(dns_server, add) == ("NOERROR", "NOERROR")
        assert await outcome(dns_server, signed(deleting(), now - 1)) == ("NOERROR", "NOERROR")
        assert await outcome(dns_server, add) == ("NOTAUTH", "BADTIME")  # the same again
        assert await published(dns_server) == []
        again = signed(adding("token2"), now)
        assert await outcome(dns_server, again) == ("NOERROR", "NOERROR")
        assert await outcome(dns_server, again) == ("NOTAUTH", "BADTIME")  # the same request
        other = signed(adding("token3"), now)  # another request in the same second is fine
        assert await outcome(dns_server, other) == ("NOERROR", "NOERROR")
        assert await published(dns_server) == ['"token2"', '"token3"']


async def test_a_client_with_a_fast_clock_does_not_shut_out_the_others() -> None:
    async with server() as dns_server:
        now = int(time.time())
        fast = signed(adding("fast"), now + 120)  # within the 300 s fudge
        assert await outcome(dns_server, fast) == ("NOERROR", "NOERROR")
        assert await outcome(dns_server, signed(adding("on-time"), now)) == ("NOERROR", "NOERROR")
        assert await outcome(dns_server, fast) == ("NOTAUTH", "BADTIME")  # still a replay
        assert await published(dns_server) == ['"fast"', '"on-time"']


async def test_a_request_cannot_widen_its_window_with_its_own_fudge() -> None:
    async with server() as dns_server:
        now = int(time.time())
        wide = signed(adding("wide"), now - 1000, fudge=65535)  # dnspython would take it
        assert await outcome(dns_server, wide) == ("NOTAUTH", "BADTIME")
        near = signed(adding("near"), now - 250, fudge=65535)  # within our 300 s
        assert await outcome(dns_server, near) == ("NOERROR", "NOERROR")
        assert await published(dns_server) == ['"near"']


def expected_mac(request_mac: bytes, reply: bytes, tsig: dns.rdtypes.ANY.TSIG.TSIG) -> bytes:
    """RFC 8945 §5.3.2's MAC of an error reply: request MAC, reply, TSIG variables."""
    arcount = struct.unpack("!H", reply[10:12])[0] - 1
    owner, algorithm = KEY.name.to_wire(), KEY.algorithm.to_wire()
    tsig_start = len(reply) - len(tsig.to_wire()) - 10 - len(owner)
    variables = owner + struct.pack("!HI", dns.rdataclass.ANY, 0) + algorithm
    variables += struct.pack(
        "!HIH", tsig.time_signed >> 32, tsig.time_signed & 0xFFFFFFFF, tsig.fudge
    )
    variables += struct.pack("!HH", tsig.error, len(tsig.other)) + tsig.other
    body = reply[:10] + struct.pack("!H", arcount) + reply[12:tsig_start]
    message = struct.pack("!H", len(request_mac)) + request_mac + body + variables
    return hmac.new(SECRET, message, hashlib.sha256).digest()


def request_mac(wire: bytes) -> bytes:
    return dns.message.from_wire(wire, keyring=False).tsig[0].mac


async def test_badtime_is_signed_with_the_servers_time() -> None:
    async with server() as dns_server:
        skewed = int(time.time()) - 3600
        wire = signed(adding("late"), skewed)
        raw = await exchange(dns_server, wire)
        reply = dns.message.from_wire(raw, keyring=False)
        tsig = reply.tsig[0]
        assert reply.rcode() == dns.rcode.NOTAUTH and tsig.error == dns.rcode.BADTIME
        assert tsig.time_signed == skewed and len(tsig.other) == 6
        high, low = struct.unpack("!HI", tsig.other)
        assert (high << 32 | low) > skewed + 300  # the server's clock, not the request's
        assert tsig.mac == expected_mac(request_mac(wire), raw, tsig)
        assert await published(dns_server) == []


@pytest.mark.parametrize(
    ("length", "rcode", "error"),
    [(1, "FORMERR", "-"), (9, "FORMERR", "-"), (15, "FORMERR", "-"),
     (16, "NOTAUTH", "BADTRUNC"), (31, "NOTAUTH", "BADTRUNC")],
    ids=["1", "9", "15", "16", "31"],
)  # fmt: skip
async def test_a_truncated_mac(length: int, rcode: str, error: str) -> None:
    async with server() as dns_server:
        wire = signed(adding("cut"), int(time.time()), mac_length=length)
        raw = await exchange(dns_server, wire)
        assert await outcome(dns_server, wire) == (rcode, error)
        if error == "BADTRUNC":
            tsig = dns.message.from_wire(raw, keyring=False).tsig[0]
            assert tsig.mac == expected_mac(request_mac(wire), raw, tsig)
        assert await published(dns_server) == []


async def test_a_wrong_truncated_mac_is_badsig() -> None:
    async with server() as dns_server:
        wire = bytearray(signed(adding("cut"), int(time.time()), mac_length=20))
        wire[-8] ^= 0xFF  # in the MAC, before original ID, error and other length
        raw = await exchange(dns_server, bytes(wire))
        reply = dns.message.from_wire(raw, keyring=False)
        assert reply.tsig[0].error == dns.rcode.BADSIG and reply.tsig[0].mac == b""

"""Garbage over real UDP and TCP sockets: FORMERR or silence, and the server lives on."""

from __future__ import annotations

import asyncio
import socket
import struct

import dns.asyncquery
import dns.message
import dns.rcode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server

LOOP = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x10\x00\x01"


async def still_answers(server: DnsServerHandle) -> None:
    q = dns.message.make_query("alive.x.test.", "A")
    reply = await dns.asyncquery.udp(q, server.host, port=server.dns_port, timeout=5)
    assert reply.answer[0][0].address == "127.0.0.1"


def udp_exchange(port: int, wire: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.sendto(wire, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


async def test_udp_garbage_gets_formerr_or_nothing() -> None:
    async with running_dns_server() as server:
        reply = await asyncio.to_thread(udp_exchange, server.dns_port, LOOP)
        assert reply is not None and reply[:2] == b"\x12\x34"
        assert reply[3] & 0x0F == dns.rcode.FORMERR
        assert await asyncio.to_thread(udp_exchange, server.dns_port, b"\x00\x01") is None
        await still_answers(server)


async def test_tcp_garbage_and_short_frames_do_not_hurt() -> None:
    async with running_dns_server() as server:
        reader, writer = await asyncio.open_connection(server.host, server.dns_port)
        writer.write(struct.pack("!H", len(LOOP)) + LOOP)
        await writer.drain()
        length = int.from_bytes(await reader.readexactly(2), "big")
        reply = await reader.readexactly(length)
        assert reply[3] & 0x0F == dns.rcode.FORMERR
        writer.write(struct.pack("!H", 500) + b"short")  # promises more than it sends
        writer.close()
        await writer.wait_closed()
        _, writer = await asyncio.open_connection(server.host, server.dns_port)
        writer.write(b"\x00\x02\x00")  # a frame too small to be a message
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await still_answers(server)


async def test_random_datagrams_over_a_real_socket() -> None:
    async with running_dns_server() as server:
        port = server.dns_port

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.binary(min_size=12, max_size=300))
        def send(wire: bytes) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(wire, ("127.0.0.1", port))

        await asyncio.to_thread(send)
        await still_answers(server)

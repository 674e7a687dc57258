"""The DNS server's bound on TCP connections from all clients together, on real sockets:
at the bound a new connection takes the place of the one that waited longest for its
client's bytes, idle or stalled in the middle of a message; a body that does not follow
its length is given up; the bound defaults below the file-descriptor limit, and a bound that
would leave the process no descriptors is refused."""

from __future__ import annotations

import asyncio
import resource
import struct
from collections.abc import AsyncIterator

import dns.message
import dns.rdatatype
import pytest
from click.testing import CliRunner

from acmekit.cli.dns import dns as dns_command
from acmekit.dns.handler import DnsHandler
from acmekit.dns.server import DnsListener
from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name
from acmekit_testkit.ports import free_tcp_udp_port
from acmekit_testkit.waits import until

BOUND = 8
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def listener() -> AsyncIterator[DnsListener]:
    store = RecordStore(["bound.test"])
    store.add(parse_name("a.bound.test"), make_rdata(RecordType.TXT, "here"))
    server = DnsListener(DnsHandler(store), idle_timeout=60, max_connections=BOUND)
    await server.start("127.0.0.1", free_tcp_udp_port())
    yield server
    await server.close()


def framed_query() -> bytes:
    wire = dns.message.make_query("a.bound.test", dns.rdatatype.TXT).to_wire()
    return struct.pack("!H", len(wire)) + wire


async def ask(connection: Connection) -> dns.message.Message | None:
    """One question on `connection`; None when the server closed it instead."""
    reader, writer = connection
    try:
        writer.write(framed_query())
        await writer.drain()
        head = await asyncio.wait_for(reader.read(2), 10)
        if len(head) < 2:
            return None
        body = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), 10)
        return dns.message.from_wire(body)
    except ConnectionError:
        return None


async def closed_by_server(connection: Connection) -> bool:
    try:
        return await asyncio.wait_for(connection[0].read(1), 10) == b""
    except ConnectionError:
        return True


async def open_held(listener: DnsListener, count: int) -> list[Connection]:
    held = []
    for _ in range(count):
        held.append(await asyncio.open_connection("127.0.0.1", listener.port))
        await until(lambda: len(listener._connections) == len(held))  # taken, in order
    return held


async def test_a_new_client_takes_the_place_of_the_longest_idle(listener: DnsListener) -> None:
    held = await open_held(listener, BOUND)
    held.append(await asyncio.open_connection("127.0.0.1", listener.port))
    answer = await ask(held[-1])
    assert answer is not None and answer.answer[0][0].strings == (b"here",)
    assert await closed_by_server(held[0])  # the oldest, idle since it connected
    assert len(listener._connections) <= BOUND
    # one that asked since is no longer the longest idle: the next to go is held[2]
    assert await ask(held[1]) is not None
    held.append(await asyncio.open_connection("127.0.0.1", listener.port))
    assert await ask(held[-1]) is not None
    assert await closed_by_server(held[2])
    assert await ask(held[1]) is not None
    assert len(listener._connections) <= BOUND
    for _, writer in held:
        writer.close()


async def test_connections_stalled_mid_message_make_room_too(listener: DnsListener) -> None:
    held = await open_held(listener, BOUND)
    for _, writer in held:  # each sends a length and never the body (RFC 7766 §6.2.3)
        writer.write(b"\x00\x40")
        await writer.drain()
    held.append(await asyncio.open_connection("127.0.0.1", listener.port))
    answer = await ask(held[-1])
    assert answer is not None and answer.answer[0][0].strings == (b"here",)
    assert await closed_by_server(held[0])
    assert len(listener._connections) <= BOUND
    for _, writer in held:
        writer.close()


async def test_a_body_that_does_not_follow_its_length_is_given_up() -> None:
    server = DnsListener(
        DnsHandler(RecordStore(["bound.test"])), idle_timeout=600, body_timeout=0.2
    )
    await server.start("127.0.0.1", free_tcp_udp_port())
    try:
        stalled = await asyncio.open_connection("127.0.0.1", server.port)
        stalled[1].write(b"\x00\x40")
        await stalled[1].drain()
        assert await closed_by_server(stalled)
        stalled[1].close()
    finally:
        await server.close()


def test_the_default_bound_is_below_the_descriptor_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    listener = DnsListener(DnsHandler(RecordStore(["bound.test"])))
    assert 0 < listener.max_connections <= soft // 2
    with pytest.raises(ValueError, match="file-descriptor limit"):
        DnsListener(DnsHandler(RecordStore(["bound.test"])), max_connections=soft)


def test_a_bound_past_the_limit_is_a_one_line_error() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    argv = ["--listen", "127.0.0.1:0", "--no-api", "--tcp-max-connections", str(soft)]
    result = CliRunner().invoke(dns_command, argv)
    assert result.exit_code == 2
    assert "file-descriptor limit" in result.output

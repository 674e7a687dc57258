"""The DNS server's TCP listener against one client that holds connections, on real
sockets: past its share a further connection is closed at once (others still get
answers), and a client that pipelines questions and never reads the answers loses its
connection like an idle one, instead of holding it for ever on a full buffer."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import dns.message
import dns.rdatatype
import pytest

from acmekit.dns.handler import DnsHandler
from acmekit.dns.server import DnsListener
from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name
from acmekit_testkit.waits import until

NAME = parse_name("big.hold.test")


@pytest.fixture
async def listener() -> AsyncIterator[DnsListener]:
    store = RecordStore(["hold.test"])
    for n in range(30):
        store.add(NAME, make_rdata(RecordType.TXT, f"{n:02d}" + "x" * 250))
    server = DnsListener(DnsHandler(store), idle_timeout=1.0, max_per_client=4)
    await server.start("127.0.0.1", 0)
    yield server
    await server.close()


def _query(name: str = "big.hold.test") -> bytes:
    wire = dns.message.make_query(name, dns.rdatatype.TXT).to_wire()
    return struct.pack("!H", len(wire)) + wire


async def _ask(port: int) -> dns.message.Message | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_query())
        await writer.drain()
        head = await asyncio.wait_for(reader.read(2), 10)
        if len(head) < 2:
            return None
        body = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), 10)
        return dns.message.from_wire(body)
    except ConnectionError:  # closed by the server: reset, as nothing was read
        return None
    finally:
        writer.close()


async def test_a_client_holds_at_most_its_share(listener: DnsListener) -> None:
    held = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(4)]
    await until(lambda: len(listener._connections) == 4)  # the server took them
    assert await _ask(listener.port) is None  # the fifth: closed unanswered
    held.pop()[1].close()
    await until(lambda: len(listener._connections) == 3)
    answer = await _ask(listener.port)
    assert answer is not None and len(answer.answer[0]) == 30
    for _, writer in held:
        writer.close()


async def test_a_client_that_never_reads_loses_its_connection(listener: DnsListener) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", listener.port))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    questions = _query() * 64
    sent = 0
    try:
        # ask and ask (each answer is about 8 KB), reading nothing back
        for _ in range(200):
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, questions), 0.5)
                sent += 1
            except (TimeoutError, ConnectionError, OSError):
                break
        assert sent > 0
        # the server lets go after its idle timeout (1 s here)
        await until(lambda: not listener._connections)
    finally:
        sock.close()

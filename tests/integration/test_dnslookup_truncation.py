"""The client's dns-01 lookups fall back to TCP whenever a UDP answer is truncated
(RFC 1035 §4.2.1, RFC 7766 §5), also when the server cut it inside a record, as RFC 1035
lets it: that is not a malformed answer but a truncated one. Served on loopback by a
server that truncates over UDP at a fixed octet and answers whole over TCP."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import dns.flags
import dns.message
import dns.rrset

from acmekit.client.solvers.dnslookup import query, txt_values
from acmekit_testkit.ports import free_tcp_udp_port

VALUES = [f"value-{i:02d}-" + "x" * 40 for i in range(12)]  # about 700 octets


def answer(wire: bytes) -> bytes:
    question = dns.message.from_wire(wire)
    reply = dns.message.make_response(question)
    values = [f'"{v}"' for v in VALUES]
    reply.answer.append(dns.rrset.from_text_list(question.question[0].name, 0, "IN", "TXT", values))
    return reply.to_wire()


class CutUdp(asyncio.DatagramProtocol):
    """Answers with the first `cut` octets of the whole answer and TC set."""

    def __init__(self, cut: int) -> None:
        self.cut = cut
        self.transport: asyncio.DatagramTransport | None = None
        self.asked = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.asked += 1
        whole = answer(data)
        cut = whole[:2] + bytes([whole[2] | dns.flags.TC >> 8]) + whole[3 : self.cut]
        assert self.transport is not None
        self.transport.sendto(cut, addr)


async def whole_over_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    reply = answer(await reader.readexactly(length))
    writer.write(struct.pack("!H", len(reply)) + reply)
    await writer.drain()
    writer.close()


@asynccontextmanager
async def truncating_server(cut: int) -> AsyncIterator[tuple[tuple[str, int], CutUdp]]:
    port = free_tcp_udp_port()
    loop = asyncio.get_running_loop()
    transport, udp = await loop.create_datagram_endpoint(
        lambda: CutUdp(cut), local_addr=("127.0.0.1", port)
    )
    tcp = await asyncio.start_server(whole_over_tcp, "127.0.0.1", port)
    try:
        yield ("127.0.0.1", port), udp
    finally:
        tcp.close()
        await tcp.wait_closed()
        transport.close()


async def test_an_answer_cut_inside_a_record_is_asked_again_over_tcp() -> None:
    async with truncating_server(cut=300) as (server, udp):
        response = await query(server, "_acme-challenge.x.test", "TXT")
    assert udp.asked == 1
    assert not response.flags & dns.flags.TC
    assert txt_values(response) == set(VALUES)


async def test_an_answer_cut_after_its_question_is_asked_again_over_tcp() -> None:
    async with truncating_server(cut=12 + 28) as (server, udp):  # the counts left as they were
        response = await query(server, "_acme-challenge.x.test", "TXT")
    assert udp.asked == 1
    assert txt_values(response) == set(VALUES)

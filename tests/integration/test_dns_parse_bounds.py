"""Messages holding more than their opcode can need, over real UDP and TCP sockets: each
is answered FORMERR from its header alone, without being parsed, and the server goes on
answering. The shape is the one that cost 0.8 s of the event loop per message: records
owned by compression pointers to a 253-octet, 126-label name."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from acmekit_testkit.dnsserver import running_dns_server
from acmekit_testkit.dnswire import tcp_exchange, udp_exchange

QUESTION = b"\x0f_acme-challenge\x01a\x01x\x04test\x00" + struct.pack("!HH", 16, 1)
LONG_NAME = b"\x01a" * 126 + b"\x00"  # 253 octets, 126 labels
QUERY, NOTIFY, UPDATE = 0, 4, 5


def pointer_records(count: int, start: int) -> bytes:
    """A NULL record owned by LONG_NAME at `start`, then `count - 1` owned by a pointer
    to it: each of those makes a parser decompress 126 labels for 12 octets."""
    first = LONG_NAME + struct.pack("!HHIH", 10, 1, 0, 0)
    pointer = struct.pack("!H", 0xC000 | start)
    return first + b"".join(pointer + struct.pack("!HHIH", 10, 1, n, 0) for n in range(1, count))


def message(opcode: int, section: int, count: int, ident: int = 0x4242) -> bytes:
    """One question, and `count` pointer records in `section` (1 answer, 2 authority,
    3 additional)."""
    counts = [1, 0, 0, 0]
    counts[section] = count
    header = struct.pack("!HH", ident, opcode << 11 | 0x0100) + struct.pack("!4H", *counts)
    return header + QUESTION + pointer_records(count, 12 + len(QUESTION))


def big_option_query(size: int) -> bytes:
    """A plain question with an OPT holding one unknown option, `size` octets in all."""
    header = struct.pack("!6H", 0x5151, 0x0100, 1, 0, 0, 1)
    data = b"z" * (size - len(header) - len(QUESTION) - 15)
    option = struct.pack("!HH", 65001, len(data)) + data
    return header + QUESTION + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack(
        "!H", len(option)
    ) + option  # fmt: skip


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts dnspython's parses of whole messages in this process (the server's)."""
    seen: list[int] = []
    real = dns.message.from_wire

    def counted(wire: bytes, *args: Any, **kwargs: Any) -> dns.message.Message:
        seen.append(len(wire))
        return real(wire, *args, **kwargs)

    monkeypatch.setattr(dns.message, "from_wire", counted)
    yield seen


def assert_header_only_formerr(reply: bytes, query: bytes) -> None:
    assert reply[:2] == query[:2]  # its ID
    assert reply[2] & 0x80 and reply[2] & 0x78 == query[2] & 0x78  # a response, its opcode
    assert reply[3] & 0x0F == dns.rcode.FORMERR
    assert reply[4:12] == bytes(8)  # no section: nothing was taken from the body
    assert len(reply) == 12


async def still_answers(port: int) -> None:
    query = dns.message.make_query("alive.x.test.", "A")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)
    assert reply.answer[0][0].address == "127.0.0.1"


async def test_a_65_kb_query_of_pointer_records_is_refused_unparsed(parses: list[int]) -> None:
    async with running_dns_server() as server:
        attack = message(QUERY, 3, 5400)
        assert len(attack) > 64_000
        replies = await tcp_exchange(server.dns_port, [attack] * 4)
        for reply in replies:
            assert_header_only_formerr(reply, attack)
        assert not [n for n in parses if n == len(attack)]
        await still_answers(server.dns_port)


@pytest.mark.parametrize(
    ("opcode", "section", "count"),
    [
        (QUERY, 3, 3),  # a query needs at most an OPT and a TSIG
        (QUERY, 2, 2),  # at most IXFR's SOA
        (QUERY, 1, 1),  # no answer record
        (UPDATE, 2, 65),  # updates past the bound
        (UPDATE, 1, 17),  # prerequisites past the bound
        (NOTIFY, 1, 2),  # a NOTIFY holds one SOA
    ],
    ids=["query-additional", "query-authority", "query-answer", "update", "prereq", "notify"],
)
async def test_records_past_what_the_opcode_needs_over_udp(
    parses: list[int], opcode: int, section: int, count: int
) -> None:
    async with running_dns_server() as server:
        wire = message(opcode, section, count)
        reply = await asyncio.to_thread(udp_exchange, server.dns_port, wire)
        assert_header_only_formerr(reply, wire)
        assert parses == []
        await still_answers(server.dns_port)


async def test_a_query_larger_than_any_query_needs(parses: list[int]) -> None:
    async with running_dns_server() as server:
        wire = big_option_query(6000)
        reply = await asyncio.to_thread(udp_exchange, server.dns_port, wire)
        assert_header_only_formerr(reply, wire)
        (tcp_reply,) = await tcp_exchange(server.dns_port, [wire])
        assert_header_only_formerr(tcp_reply, wire)
        assert parses == []
        # within the bound the same shape is parsed and answered as before
        small = big_option_query(1000)
        reply = await asyncio.to_thread(udp_exchange, server.dns_port, small)
        answer = dns.message.from_wire(reply)
        assert answer.rcode() == dns.rcode.NOERROR and answer.id == 0x5151


async def test_an_update_to_a_server_without_keys_is_refused_unparsed(parses: list[int]) -> None:
    """Within the bounds, but no one may update: REFUSED (RFC 2136 §3.3), unparsed."""
    async with running_dns_server() as server:
        wire = message(UPDATE, 2, 64)
        reply = await asyncio.to_thread(udp_exchange, server.dns_port, wire)
        assert reply[:2] == wire[:2] and reply[3] & 0x0F == dns.rcode.REFUSED
        assert reply[4:12] == bytes(8)
        assert parses == []

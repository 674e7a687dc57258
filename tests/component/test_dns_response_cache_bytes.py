"""The response cache against queries that would fill it, through a real listener on
loopback: a query carrying an EDNS option that does not change the answer is answered
as without it and never cached, and big answers over UDP and TCP together stay within
one bound in octets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import dns.edns
import dns.message
import dns.rdatatype
import pytest

from acmekit.dns.handler import DnsHandler
from acmekit.dns.server import DnsListener
from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name
from acmekit_testkit.dnswire import tcp_exchange as raw_tcp
from acmekit_testkit.dnswire import udp_exchange as raw_udp
from acmekit_testkit.ports import free_tcp_udp_port

BOUND = 64 * 1024


@pytest.fixture
async def listener() -> AsyncIterator[DnsListener]:
    store = RecordStore(["cache.test"])
    # a wildcard's answers take the general path, and the cache (the fast path needs none)
    store.add(parse_name("*.small.cache.test"), make_rdata(RecordType.TXT, "token"))
    for n in range(8):  # every name under big.cache.test answers about 2 KB
        store.add(parse_name("*.big.cache.test"), make_rdata(RecordType.TXT, f"{n}" + "x" * 250))
    server = DnsListener(DnsHandler(store, cache_bytes=BOUND))
    await server.start("127.0.0.1", free_tcp_udp_port())
    yield server
    await server.close()


def udp_exchange(port: int, wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(raw_udp(port, wire))


async def tcp_exchange(port: int, wires: list[bytes]) -> list[dns.message.Message]:
    return [dns.message.from_wire(reply) for reply in await raw_tcp(port, wires)]


def query(name: str, option: bytes | None = None, ident: int = 7) -> bytes:
    options = [] if option is None else [dns.edns.GenericOption(65001, option)]
    message = dns.message.make_query(name, dns.rdatatype.TXT, use_edns=0, options=options)
    message.id = ident
    return message.to_wire(max_size=65535)


async def test_an_unknown_option_is_answered_but_not_cached(listener: DnsListener) -> None:
    port, cache = listener.port, listener.handler.cache
    name = "_acme-challenge.small.cache.test"
    plain = await asyncio.to_thread(udp_exchange, port, query(name))
    assert len(cache) == 1
    before = cache.bytes
    for n in range(64):  # each with another 3 KB option: under the old key, 64 entries
        wire = query(name, n.to_bytes(2, "big") + b"z" * 3000, ident=n)
        reply = await asyncio.to_thread(udp_exchange, port, wire)
        assert reply.id == n and reply.answer == plain.answer
    assert len(cache) == 1 and cache.bytes == before


async def test_a_cookie_is_part_of_the_key(listener: DnsListener) -> None:
    """A resolver's cookie (RFC 7873) stays cacheable: its repeats are hits."""
    cookie = dns.message.make_query(
        "_acme-challenge.small.cache.test", "TXT", use_edns=0,
        options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")],
    ).to_wire()  # fmt: skip
    first = await asyncio.to_thread(udp_exchange, listener.port, cookie)
    again = await asyncio.to_thread(udp_exchange, listener.port, cookie)
    assert len(listener.handler.cache) == 1
    assert again.answer == first.answer and len(first.answer[0]) == 1


async def test_big_answers_over_both_transports_stay_within_one_bound(
    listener: DnsListener,
) -> None:
    port, cache = listener.port, listener.handler.cache
    names = [f"n{n}.big.cache.test" for n in range(60)]  # 60 answers of about 2 KB
    replies = await tcp_exchange(port, [query(name) for name in names])
    assert all(len(reply.answer[0]) == 8 for reply in replies)
    assert cache.bytes <= BOUND
    for name in names:  # over UDP the same names answer truncated, and are kept too
        reply = await asyncio.to_thread(udp_exchange, port, query(name))
        assert reply.flags & dns.flags.TC or len(reply.answer[0]) == 8
        assert cache.bytes <= BOUND
    assert len(cache) > 10  # the newest are kept
    # what the cache answers is still right: the last names, over TCP
    replies = await tcp_exchange(port, [query(name) for name in names[-5:]])
    assert all(len(reply.answer[0]) == 8 for reply in replies)

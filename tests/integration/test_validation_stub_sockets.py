"""The validation stub's shared UDP sockets, against a real resolver on loopback.

Questions share a socket, at most UDP_MAX_QUERIES of them, then a new socket (a new
source port) takes over; concurrent questions on one socket get their own answers,
matched by message ID; an answer with an ID nobody waits for is ignored; a retired
socket is closed once its last answer is in.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import dns.message
import dns.rdatatype
import dns.rrset

from acmekit.server.validation import stub as stub_module
from acmekit.server.validation.stub import UDP_MAX_QUERIES, StubClient, decode_a


def _address(qname: str) -> str:
    """Each name its own address, so that a mixed-up answer shows."""
    return f"192.0.2.{sum(qname.encode()) % 250 + 1}"


class _Recorder(asyncio.DatagramProtocol):
    """Answers A questions; records each query's source port. With `hold`, keeps the
    first `hold` queries and answers them in reverse order, each preceded by a copy
    whose ID is off by one."""

    def __init__(self, hold: int = 0) -> None:
        self.ports: list[int] = []
        self.hold = hold
        self.held: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.ports.append(addr[1])
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        qname = query.question[0].name.to_text()
        reply.answer.append(dns.rrset.from_text(qname, 0, "IN", "A", _address(qname)))
        if len(self.held) < self.hold:
            self.held.append((reply.to_wire(), addr))
            if len(self.held) == self.hold:
                for wire, to in reversed(self.held):
                    wrong = bytes([wire[0], wire[1] ^ 1]) + wire[2:]
                    self.send(wrong, to)
                    self.send(wire, to)
            return
        self.send(reply.to_wire(), addr)

    def send(self, wire: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(wire, addr)


@asynccontextmanager
async def recorder(hold: int = 0) -> AsyncIterator[tuple[_Recorder, tuple[str, int]]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Recorder(hold), local_addr=("127.0.0.1", 0)
    )
    try:
        yield protocol, ("127.0.0.1", transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_socket_serves_at_most_udp_max_queries_questions() -> None:
    async with recorder() as (server, address):
        stub = StubClient(address)
        before = _open_fds()
        asked = 3 * UDP_MAX_QUERIES + 1
        for i in range(asked):
            name = f"n{i}.test."
            reply = await stub.ask(name, dns.rdatatype.A, decode_a, 2.0)
            assert reply is not None and reply.values == (_address(name),)
        assert len(server.ports) == asked
        counts = {port: server.ports.count(port) for port in server.ports}
        assert len(counts) == 4
        assert max(counts.values()) == UDP_MAX_QUERIES
        # Each port's questions came one after another, then it was never used again.
        firsts = sorted(server.ports.index(port) for port in counts)
        assert firsts == [0, UDP_MAX_QUERIES, 2 * UDP_MAX_QUERIES, 3 * UDP_MAX_QUERIES]
        assert _open_fds() <= before + 1  # the retired sockets were closed


async def test_concurrent_questions_get_their_own_answers() -> None:
    names = [f"c{i}.example.test." for i in range(8)]
    async with recorder(hold=len(names)) as (server, address):
        stub = StubClient(address)
        replies = await asyncio.gather(
            *(stub.ask(name, dns.rdatatype.A, decode_a, 2.0) for name in names)
        )
        for name, reply in zip(names, replies, strict=True):
            assert reply is not None and reply.values == (_address(name),)
        assert len(set(server.ports)) == 1  # all in flight on one socket


async def test_a_silent_server_leaves_the_question_to_the_resolver() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        stub = StubClient(("127.0.0.1", transport.get_extra_info("sockname")[1]))
        assert await stub.ask("quiet.test.", dns.rdatatype.A, decode_a, 0.2) is None
    finally:
        transport.close()


class _Selective(_Recorder):
    """Answers every name but those starting with "quiet"."""

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not dns.message.from_wire(data).question[0].name.to_text().startswith("quiet"):
            super().datagram_received(data, addr)


async def test_one_timer_ends_each_wait_at_its_own_time() -> None:
    """The socket's one timer: a shorter wait asked after a longer one ends first, the
    longer one still ends, and the timer an answered question leaves behind serves the
    next questions (no timer of their own) without ending a later, longer wait early."""
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(_Selective, local_addr=("127.0.0.1", 0))
    try:
        stub = StubClient(("127.0.0.1", transport.get_extra_info("sockname")[1]))
        slow = asyncio.ensure_future(stub.ask("quiet1.test.", dns.rdatatype.A, decode_a, 1.0))
        await asyncio.sleep(0)
        fast = asyncio.ensure_future(stub.ask("quiet2.test.", dns.rdatatype.A, decode_a, 0.05))
        done, _ = await asyncio.wait({slow, fast}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {fast} and fast.result() is None
        assert await slow is None

        timers = []
        for name in ("a.test.", "b.test.", "c.test."):
            answered = await stub.ask(name, dns.rdatatype.A, decode_a, 0.05)
            assert answered is not None and answered.values == (_address(name),)
            assert stub._channel is not None
            timers.append(stub._channel._timer)
        assert timers[0] is not None and timers == [timers[0]] * 3  # one timer for all
        later = asyncio.ensure_future(stub.ask("quiet3.test.", dns.rdatatype.A, decode_a, 30))
        await asyncio.sleep(0.3)  # past the answered questions' end, when the timer fired
        assert not later.done()
        later.cancel()
        await asyncio.gather(later, return_exceptions=True)
        assert len(set(server.ports)) == 1
    finally:
        transport.close()


async def test_an_answered_question_keeps_its_id_until_it_is_over() -> None:
    """Between its answer's arrival and its end (`done_with`), a question's ID is not
    drawn for another: that question's end would take the newcomer's wait with it, and
    its answer would go unheard with no timer left to end its wait."""
    loop = asyncio.get_running_loop()
    channel = stub_module._Channel()
    saved = list(stub_module._IDENTS)
    try:
        stub_module._IDENTS[:] = [5, 7, 7]  # drawn from the end
        first = channel.new_ident()
        answer: asyncio.Future[bytes] = loop.create_future()
        channel.waiting[first] = answer
        channel.wait_until(loop, first, loop.time() + 30)
        channel.datagram_received(bytes([0, first]) + bytes(10), None)  # answered
        assert answer.done() and first not in channel.waiting
        assert channel.new_ident() == 5  # not 7 again: the first question is not over
    finally:
        stub_module._IDENTS[:] = saved
        channel._stop_timer()


class _Mixed(_Recorder):
    """Answers names starting with "ok", in reverse order once all of them are in; a
    name starting with "bad" with a datagram that is not an answer; others not at all."""

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        name = dns.message.from_wire(data).question[0].name.to_text()
        if name.startswith("bad"):
            self.send(data[:2] + b"\x80", addr)  # its ID, then too short to read
        elif name.startswith("ok"):
            super().datagram_received(data, addr)


async def test_ask_all_reads_each_answer_in_order_and_waits_once() -> None:
    """`ask_all`: the replies in the order of the names, whatever order the answers
    came in; a name without an answer (silent, or an answer the stub cannot read) is
    None, for the resolver; the wait ends at `wait` for the silent one, no later; and
    the questions' IDs are free again afterwards."""
    names = ["ok1.test.", "quiet.test.", "ok2.test.", "bad.test.", "ok3.test."]
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: _Mixed(hold=3), local_addr=("127.0.0.1", 0)
    )
    try:
        stub = StubClient(("127.0.0.1", transport.get_extra_info("sockname")[1]))
        started = loop.time()
        replies = await stub.ask_all(names, dns.rdatatype.A, decode_a, 0.2)
        waited = loop.time() - started
        assert 0.15 < waited < 1.5
        values = [None if r is None else r.values for r in replies]
        assert values == [
            (_address(names[0]),),
            None,
            (_address(names[2]),),
            None,
            (_address(names[4]),),
        ]
        channel = stub._channel
        assert channel is not None and not channel.waiting and not channel._ends
        assert len(set(server.ports)) == 1  # one socket for the batch
        # All answered: the batch ends with the last answer, not at `wait`.
        started = loop.time()
        answered = await stub.ask_all(["ok4.test.", "ok5.test."], dns.rdatatype.A, decode_a, 5)
        assert [r is not None and r.values for r in answered] == [
            (_address("ok4.test."),),
            (_address("ok5.test."),),
        ]
        assert loop.time() - started < 2
    finally:
        transport.close()


async def test_ask_all_cancelled_leaves_no_question_waiting() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        stub = StubClient(("127.0.0.1", transport.get_extra_info("sockname")[1]))
        names = ["quiet1.test.", "quiet2.test."]
        task = asyncio.ensure_future(stub.ask_all(names, dns.rdatatype.A, decode_a, 30))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        channel = stub._channel
        assert channel is not None and not channel.waiting and not channel._ends
    finally:
        transport.close()

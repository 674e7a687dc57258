"""An http-01 fetch whose time runs out while the host's addresses are still awaited is a
`dns` problem naming the host (RFC 8555 §6.7), not a `connection` timeout; a fetch whose
time runs out once connected stays a `connection` one.

A real resolver on loopback (UDP, dnspython's wire format) answers the names it is told
to hold back only after `LATE` seconds, long after the validation's deadline; the others
at once. The fetch's bound and the lookups' bound share that deadline: the cases are the
lookup of the challenge's name, the AAAA lookup after every A address refused, and, in
the Validator, the lookup of a redirect's target started when little time is left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import cast

import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.validation import ValidationConfig, Validator
from acmekit.server.validation.http01 import Http01Policy, https_context, validate_http01
from acmekit.server.validation.reserved import AddressPolicy
from acmekit.server.validation.resolve import DnsClient
from acmekit_testkit.acmekit_server import LOOPBACK_NETWORKS
from acmekit_testkit.ports import free_port

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEY_AUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
PATH = f"/.well-known/acme-challenge/{TOKEN}"
LATE = 5.0  # seconds before a held-back answer is sent: after every deadline here
BOUND = 0.5  # seconds a direct fetch is given
LOOPBACK = AddressPolicy.allowing(("127.0.0.0/8", "::1/128"))


class _LateResolver(asyncio.DatagramProtocol):
    """Every name has A 127.0.0.1 and AAAA ::1; the answers for names starting `late`
    (of the types in `late_types`) are sent `LATE` seconds after the question."""

    def __init__(self, late_types: tuple[int, ...]) -> None:
        self.late_types = late_types
        self.transport: asyncio.DatagramTransport | None = None
        self.held: list[str] = []
        self.held_back = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().lower()
        reply = dns.message.make_response(query)
        if question.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(question.name, 0, "IN", "A", "127.0.0.1"))
        elif question.rdtype == dns.rdatatype.AAAA:
            reply.answer.append(dns.rrset.from_text(question.name, 0, "IN", "AAAA", "::1"))
        if name.startswith("late") and question.rdtype in self.late_types:
            self.held.append(f"{dns.rdatatype.to_text(question.rdtype)} {name}")
            self.held_back.set()
            asyncio.get_running_loop().call_later(LATE, self._send, reply, addr)
            return
        self._send(reply, addr)

    def _send(self, reply: dns.message.Message, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply.to_wire(), addr)


@asynccontextmanager
async def late_resolver(
    late_types: tuple[int, ...] = (dns.rdatatype.A, dns.rdatatype.AAAA),
) -> AsyncIterator[tuple[tuple[str, int], _LateResolver]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _LateResolver(late_types), local_addr=("127.0.0.1", 0)
    )
    try:
        yield transport.get_extra_info("sockname")[:2], protocol
    finally:
        transport.close()


async def failure(call: Awaitable[object]) -> AcmeError:
    """The AcmeError `call` ends in, well before any held-back answer comes."""
    async with asyncio.timeout(LATE - 1):
        with pytest.raises(AcmeError) as info:
            await call
    return info.value


def _direct(at: tuple[str, int], port: int, name: str) -> Awaitable[None]:
    """validate_http01 alone, bounded by BOUND seconds, through a DnsClient whose own
    timeout (outside a Validator, a lookup's) is longer than that."""
    client = DnsClient(at, timeout=3 * BOUND, reachable=LOOPBACK)
    policy = Http01Policy(port, 443, 1024, 0, 8192)
    ident = Identifier(IdentifierType.DNS, name)
    deadline = asyncio.get_running_loop().time() + BOUND
    return validate_http01(client, https_context(), policy, ident, TOKEN, KEY_AUTH, deadline)


async def test_a_lookup_still_waiting_at_the_deadline_is_a_dns_problem() -> None:
    port = free_port()  # nothing listens: no connection is ever tried
    async with late_resolver() as (at, served):
        err = await failure(_direct(at, port, "late.x.test"))
    assert served.held == ["A late.x.test."]
    assert err.problem.type == ProblemType.DNS
    assert err.problem.detail == (
        f"fetching http://late.x.test:{port}{PATH}: DNS problem: timeout looking up late.x.test"
    )


async def test_the_aaaa_lookup_after_every_a_address_refused_is_a_dns_problem() -> None:
    port = free_port()  # 127.0.0.1 refuses; AAAA is then asked, and answered late
    async with late_resolver(late_types=(dns.rdatatype.AAAA,)) as (at, served):
        err = await failure(_direct(at, port, "late.x.test"))
    assert served.held == ["AAAA late.x.test."]
    assert err.problem.type == ProblemType.DNS
    assert err.problem.detail == (
        f"fetching http://late.x.test:{port}{PATH}: DNS problem: timeout looking up late.x.test"
    )


async def test_a_target_silent_once_connected_is_still_a_connection_timeout() -> None:
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with late_resolver() as (at, served):
            err = await failure(_direct(at, port, "prompt.x.test"))
        assert accepted.is_set() and served.held == []
    finally:
        for writer in held:
            writer.close()
        server.close()
    assert err.problem.type == ProblemType.CONNECTION
    assert err.problem.detail == f"fetching http://prompt.x.test:{port}{PATH}: timeout"


async def test_in_the_validator_a_redirect_target_resolved_too_late_is_a_dns_problem() -> None:
    """The challenge's name answers with a redirect when less time is left than a lookup's
    shortest lifetime (50 ms): the target's lookup is the one the deadline cuts off.

    The window is 50 ms wide, so a loop held up for longer (a loaded machine) reaches
    the deadline before the redirect is followed: no lookup of the target is asked, and
    that attempt shows nothing. Such attempts are run again; every attempt in which the
    target's lookup was asked must end in the dns problem."""
    shown = 0
    for _ in range(ATTEMPTS):
        err, held, port = await _redirect_late_at_the_deadline()
        if not held:
            continue  # the deadline came before the redirect was followed
        assert held == ["A late.x.test."]
        assert err.problem.type == ProblemType.DNS
        assert err.problem.detail == (
            f"fetching http://late.x.test:{port}{PATH}: DNS problem: timeout looking up late.x.test"
        )
        assert err.problem.identifier == Identifier(IdentifierType.DNS, "first.x.test").to_json()
        shown += 1
        if shown == 2:
            return
    assert shown, f"in {ATTEMPTS} attempts the redirect was never followed before the deadline"


ATTEMPTS = 6


async def _redirect_late_at_the_deadline() -> tuple[AcmeError, list[str], int]:
    """One validation of first.x.test whose answer, a redirect to late.x.test, comes 40 ms
    before the Validator's deadline: its error, the lookups held back, the port."""
    timeout = 1.0
    loop = asyncio.get_running_loop()
    redirect_at = 0.0

    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(redirect_at - loop.time())
        target = f"http://late.x.test:{port}{PATH}"
        writer.write(
            f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(redirect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with late_resolver() as (at, served):
            va = Validator(
                ValidationConfig(
                    allow_networks=LOOPBACK_NETWORKS,
                    dns_resolver=at,
                    http01_port=port,
                    timeout=timeout,
                )
            )
            # the Validator's deadline is after this plus `timeout`
            redirect_at = loop.time() + timeout - 0.04
            ident = Identifier(IdentifierType.DNS, "first.x.test")
            err = await failure(va.validate(ChallengeType.HTTP_01, ident, TOKEN, KEY_AUTH))
    finally:
        server.close()
    return err, list(served.held), port

"""Stub DNS servers on loopback: one that answers every query with one rcode, or never
answers; and a scripted resolver that fails for some names only.

For the failures a real zone server rarely produces on demand: NXDOMAIN for any name,
silence (a resolver that has died), SERVFAIL for CAA alone. Real UDP on 127.0.0.1,
dnspython for the wire format.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class _Answerer(asyncio.DatagramProtocol):
    def __init__(self, rcode: dns.rcode.Rcode | None) -> None:
        self.rcode = rcode
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.rcode is None or self.transport is None:
            return
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.set_rcode(self.rcode)
        self.transport.sendto(reply.to_wire(), addr)


@asynccontextmanager
async def stub_dns(rcode: dns.rcode.Rcode | None) -> AsyncIterator[tuple[str, int]]:
    """Serve `rcode` for every query (None: stay silent); yields the resolver's HOST, PORT."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Answerer(rcode), local_addr=("127.0.0.1", 0)
    )
    try:
        port: int = transport.get_extra_info("sockname")[1]
        yield ("127.0.0.1", port)
    finally:
        transport.close()


class ScriptedResolver(asyncio.DatagramProtocol):
    """A recursive resolver for validation-fault tests. Every name has A 127.0.0.1 (names
    starting `hung.`: 127.0.0.2), TXT `txt` and no CAA; but questions naming `silent` are
    dropped (`dropped` is set), and CAA questions naming `failing` get SERVFAIL. `asked`
    holds every question's name, lower case and absolute."""

    def __init__(self, txt: str) -> None:
        self.txt = txt
        self.transport: asyncio.DatagramTransport | None = None
        self.asked: list[str] = []
        self.dropped = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().lower()
        self.asked.append(name)
        if "silent" in name:
            self.dropped.set()
            return
        reply = dns.message.make_response(query)
        if question.rdtype == dns.rdatatype.CAA and "failing" in name:
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif question.rdtype == dns.rdatatype.A:
            address = "127.0.0.2" if name.startswith("hung.") else "127.0.0.1"
            reply.answer.append(dns.rrset.from_text(question.name, 0, "IN", "A", address))
        elif question.rdtype == dns.rdatatype.TXT:
            reply.answer.append(dns.rrset.from_text(question.name, 0, "IN", "TXT", f'"{self.txt}"'))
        if self.transport is not None:
            self.transport.sendto(reply.to_wire(), addr)


@asynccontextmanager
async def scripted_resolver(
    txt: str = "",
) -> AsyncIterator[tuple[tuple[str, int], ScriptedResolver]]:
    """Serve a ScriptedResolver on loopback; yields its HOST, PORT and itself."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: ScriptedResolver(txt), local_addr=("127.0.0.1", 0)
    )
    try:
        yield ("127.0.0.1", transport.get_extra_info("sockname")[1]), protocol
    finally:
        transport.close()

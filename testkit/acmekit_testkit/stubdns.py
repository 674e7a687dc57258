"""A stub DNS server on loopback that answers every query with one rcode, or never answers.

For the failures a real zone server rarely produces on demand: NXDOMAIN for any name, or
silence (a resolver that has died). Real UDP on 127.0.0.1, dnspython for the wire format.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import dns.message
import dns.rcode


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

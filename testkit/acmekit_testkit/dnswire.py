"""Raw DNS exchanges with a server on 127.0.0.1: the bytes a test sent and got back,
for messages a DNS library would refuse to build or to parse."""

from __future__ import annotations

import asyncio
import socket
import struct


def udp_exchange(port: int, wire: bytes) -> bytes:
    """One datagram out, one back (5 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(wire, ("127.0.0.1", port))
        return sock.recv(65535)


async def tcp_exchange(port: int, wires: list[bytes]) -> list[bytes]:
    """Pipeline `wires` on one connection (RFC 7766 framing); the answers, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(struct.pack("!H", len(w)) + w for w in wires))
        await writer.drain()
        replies = []
        for _ in wires:
            length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10), "big")
            replies.append(await reader.readexactly(length))
        return replies
    finally:
        writer.close()

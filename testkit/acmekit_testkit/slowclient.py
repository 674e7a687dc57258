"""A slowloris client: a request head trickled a byte at a time, for tests that a
listener cuts such a client off (nginx's `client_header_timeout`)."""

from __future__ import annotations

import asyncio
import ssl


async def trickle_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
) -> bool:
    """Send `head`, then one more header byte every 50 ms for up to 20 s; True once the
    server has closed the connection (end of stream, or a reset or TLS error on write)."""
    writer.write(head)
    for _ in range(400):
        await asyncio.sleep(0.05)
        if reader.at_eof() or writer.is_closing():
            return True
        try:
            writer.write(b"1")
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            return True
    return False

"""Small TCP servers on loopback for tests, whose connections are all closed on exit.

`asyncio.Server.close()` on Python 3.11 leaves accepted connections open; a test that
ends while a handler still holds one would leak the socket. `tcp_server` tracks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Say nothing; wait until the peer goes away."""
    with contextlib.suppress(OSError, ssl.SSLError):
        await reader.read()


@asynccontextmanager
async def tcp_server(
    handler: Handler = hold,
    ssl_context: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[int]:
    """Serve `handler` on `port` of `host` (0: a free one); yields the port."""
    writers: set[asyncio.StreamWriter] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, host, port, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()
        await asyncio.sleep(0)

"""acmekit.http1 and a chunked body's trailer section (RFC 9112 §7.1.2), over real
sockets on 127.0.0.1. Trailers are no part of the request's header section (RFC 9110
§6.5.1: not merged into it) and are bounded as a head is, by `max_header_bytes`: they
were appended to the headers of the request already given to its app (a second Host
among them), and neither their number nor one field's length had any bound, so a
client that finished its body with an endless trailer field made the server buffer it
for as long as the body's deadline ran."""

from __future__ import annotations

import asyncio
from typing import Any

from acmekit.http1 import ListenerLimits
from acmekit_testkit.http1serve import http1_serving, read_body

CAP = 1024


class _App:
    def __init__(self) -> None:
        self.headers: list[list[tuple[bytes, bytes]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        if body is None:
            return
        self.headers.append(list(scope["headers"]))  # as the app sees them after its body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


HEAD = b"POST /t HTTP/1.1\r\nHost: ca.test\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_trailers_are_not_merged_into_the_requests_headers() -> None:
    app = _App()
    async with http1_serving(app, ListenerLimits(max_header_bytes=CAP)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with asyncio.timeout(10):
                writer.write(HEAD + b"3\r\nabc\r\n0\r\nHost: evil.test\r\nX-Late: 1\r\n\r\n")
                assert (await reader.readline()).startswith(b"HTTP/1.1 200 ")
                await reader.readuntil(b"\r\n\r\nabc")
                # the connection serves on
                writer.write(b"GET /next HTTP/1.1\r\nHost: ca.test\r\n\r\n")
                assert (await reader.readline()).startswith(b"HTTP/1.1 200 ")
        finally:
            writer.close()
    assert app.headers[0] == [(b"host", b"ca.test"), (b"transfer-encoding", b"chunked")]


async def test_trailers_past_the_header_cap_are_refused() -> None:
    for trailers in (b"X-Long: " + b"a" * 4096, b"X-Many: 1\r\n" * 400):
        app = _App()
        async with http1_serving(app, ListenerLimits(max_header_bytes=CAP)) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                async with asyncio.timeout(10):
                    writer.write(HEAD + b"3\r\nabc\r\n0\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.1)
                    for at in range(0, len(trailers), 512):  # in reads of their own
                        writer.write(trailers[at : at + 512])
                        await writer.drain()
                        await asyncio.sleep(0.02)
                    writer.write(b"\r\n\r\n")
                    status = await reader.readline()
            finally:
                writer.close()
        assert status.startswith(b"HTTP/1.1 431 "), (trailers[:10], status)
        assert app.headers == []

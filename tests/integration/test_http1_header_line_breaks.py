"""The CA's HTTP/1.1 server (acmekit.http1) never writes a response header whose name or
value holds CR or LF (RFC 9110 §5.5: a line break there would start a header, or a body,
of the app's making): the response is dropped and the connection closed. Ordinary
headers, and the ones the server frames itself (Connection, Transfer-Encoding), pass as
before. Over a real socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from acmekit_testkit.http1serve import http1_serving

Headers = list[tuple[bytes, bytes]]


def app_answering(headers: Headers) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@asynccontextmanager
async def serving(headers: Headers) -> AsyncIterator[int]:
    async with http1_serving(app_answering(headers)) as (_, port):
        yield port


async def exchange(port: int) -> bytes:
    """All the server sends for one request, until it closes (`Connection: close`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_ordinary_headers_are_written() -> None:
    headers = [(b"content-type", b"text/plain"), (b"replay-nonce", b"abc"), (b"x-a", b"")]
    async with serving(headers) as port:
        answer = await exchange(port)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-type: text/plain\r\nreplay-nonce: abc\r\nx-a: \r\n" in head
    assert body == b"ok"


@pytest.mark.parametrize(
    "header",
    [
        (b"location", b"/a\r\nset-cookie: injected=1"),
        (b"location", b"/a\nset-cookie: injected=1"),
        (b"location", b"/a\rset-cookie: injected=1"),
        (b"x-a\r\nset-cookie", b"injected=1"),
        (b"connection", b"keep-alive\r\nset-cookie: injected=1"),
        (b"transfer-encoding", b"chunked\r\nset-cookie: injected=1"),
    ],
)
async def test_a_header_with_a_line_break_is_never_written(header: tuple[bytes, bytes]) -> None:
    async with serving([(b"content-type", b"text/plain"), header]) as port:
        answer = await exchange(port)
    assert answer == b""  # nothing of the response: the connection is closed

"""acmekit.http1's bounds on slow clients, and an absolute-form target without a path,
over real sockets on 127.0.0.1.

- A request body had `header_timeout` for the whole of it from the end of its head: a
  client sending steadily but slower than its size over that (about 17 KiB/s for 1 MiB
  at the default 60 s) got 408. The deadline is one of progress now (each read moves it
  on), held to a minimum average rate so that one byte a gap cannot hold a connection.
- A client that pipelined requests, or asked for a streamed answer, and never read had
  no bound: the server waited on the paused transport for as long as the socket stayed
  open. The wait is bounded by `send_timeout`, then the connection is closed.
- `GET http://host HTTP/1.1` was served as the path `*`; RFC 9112 §3.2.2 makes it `/`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest

from acmekit.http1 import ListenerLimits
from acmekit_testkit.http1serve import http1_serving, read_body

BIG = 256 * 1024  # an answer's size on /big, and each streamed piece of /stream


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = await read_body(receive)
    if body is None:
        return
    path = scope["path"]
    if path == "/stream":  # 64 MiB in pieces: held back only by the transport
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(256):
            await send({"type": "http.response.body", "body": b"s" * BIG, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = b"b" * BIG if path == "/big" else f"{path} {len(body)}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": answer})


async def _status(reader: asyncio.StreamReader) -> int:
    line = await reader.readline()
    return int(line.split(b" ", 2)[1]) if line else 0


# the body's deadline --------------------------------------------------------------------


async def test_a_body_that_keeps_coming_is_read_past_the_header_timeout() -> None:
    """Six pieces 0.3 s apart: 1.8 s in all, against a deadline of 1 s between reads."""
    piece = b"p" * 4096
    async with http1_serving(app, ListenerLimits(header_timeout=1.0)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (6 * 4096)
            )
            for _ in range(6):
                await asyncio.sleep(0.3)
                writer.write(piece)
                await writer.drain()
            async with asyncio.timeout(10):
                assert await _status(reader) == 200
                await reader.readuntil(b"\r\n\r\n")
                assert await reader.read(64) == b"/slow 24576"
        finally:
            writer.close()


async def test_a_body_trickled_a_byte_a_gap_still_gets_408() -> None:
    """Every gap is inside the deadline, but a byte in 0.2 s is far under the minimum
    rate: 408 long before the 200 bytes promised have come."""
    async with http1_serving(app, ListenerLimits(header_timeout=1.0, min_body_rate=100)) as (
        _,
        port,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = 0

        async def trickle() -> None:
            nonlocal sent
            with suppress(ConnectionError):
                while sent < 200:
                    await asyncio.sleep(0.2)
                    writer.write(b"t")
                    await writer.drain()
                    sent += 1

        writer.write(b"POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n")
        trickling = asyncio.create_task(trickle())
        try:
            async with asyncio.timeout(60):
                status = await _status(reader)
            assert status == 408
            assert sent < 200
        finally:
            trickling.cancel()
            writer.close()


# a client that does not read ---------------------------------------------------------------


async def _until(done: Callable[[], bool]) -> bool:
    """Whether `done()` comes true within 10 s."""
    for _ in range(200):
        if done():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize(
    "burst",
    [
        b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 200,  # pipelined, each answer whole
        b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",  # one answer, streamed
    ],
    ids=["pipelined", "streamed"],
)
async def test_a_client_that_never_reads_is_closed(burst: bytes) -> None:
    async with http1_serving(app, ListenerLimits(send_timeout=0.5)) as (server, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        try:
            await asyncio.get_running_loop().sock_sendall(sock, burst)
            assert await _until(lambda: bool(server.connections))  # accepted
            assert await _until(lambda: not server.connections)  # closed, nothing read
        finally:
            sock.close()


# the request target ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path"),
    [(b"http://x", b"/"), (b"http://x?q=1", b"/"), (b"http://x/a", b"/a"), (b"*", b"*")],
)
async def test_an_absolute_target_without_a_path_is_the_root(target: bytes, path: bytes) -> None:
    async with http1_serving(app, ListenerLimits()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"OPTIONS %b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target)
            async with asyncio.timeout(10):
                answer = await reader.read()
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert answer.endswith(b"\r\n\r\n" + path + b" 0"), answer

"""acmekit.http1 answers a connection's requests from one task (over real sockets on
127.0.0.1): kept-alive and pipelined requests each run in it in turn, and an exchange
refused in the middle of its body (413) while its app reads is cancelled alone: the
refusal is still answered by that task, and the server serves on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from acmekit.http1 import ListenerLimits
from acmekit_testkit.http1serve import http1_serving


@dataclass
class App:
    tasks: list[asyncio.Task[Any] | None] = field(default_factory=list)
    reading: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.tasks.append(asyncio.current_task())
        body = b""
        try:
            while True:
                self.reading.set()
                message = await receive()
                if message["type"] != "http.request":
                    return
                body += message["body"]
                if not message.get("more_body"):
                    break
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {"type": "http.response.body", "body": b"%s %d" % (scope["path"].encode(), len(body))}
        )


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status = int((await reader.readline()).split(b" ", 2)[1])
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    return status, await reader.readexactly(length)


async def test_a_connections_requests_run_in_one_task() -> None:
    app = App()
    async with http1_serving(app, ListenerLimits()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with asyncio.timeout(10):
                for n in range(3):  # kept alive, one after another
                    writer.write(b"GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
                    assert await _answer(reader) == (200, b"/k%d 0" % n)
                writer.write(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n" * 3)  # pipelined
                assert [await _answer(reader) for _ in range(3)] == [(200, b"/p 0")] * 3
        finally:
            writer.close()
    assert len(app.tasks) == 6
    assert len(set(app.tasks)) == 1


async def test_a_body_over_the_cap_while_its_app_reads_is_413_from_the_same_task() -> None:
    app = App()
    async with http1_serving(app, ListenerLimits(max_body_bytes=1000)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with asyncio.timeout(10):
                writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await _answer(reader) == (200, b"/first 0")
                app.reading.clear()
                writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                await app.reading.wait()  # its app waits for the body
                writer.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
                status, body = await _answer(reader)
                assert status == 413
                assert b"larger than 1000 bytes" in body
                assert await reader.read() == b""  # and the connection closes
        finally:
            writer.close()
        assert app.cancelled == 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:  # the server serves on
            async with asyncio.timeout(10):
                writer.write(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await _answer(reader) == (200, b"/after 0")
        finally:
            writer.close()

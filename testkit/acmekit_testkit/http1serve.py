"""The project's HTTP/1.1 server (`acmekit.http1`) on an ephemeral loopback port, for the
listener's own tests, and what their ASGI apps share."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from acmekit.http1 import Http1Server, ListenerLimits


@asynccontextmanager
async def http1_serving(
    app: Any, limits: ListenerLimits | None = None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Http1Server, int]]:
    """`app` served on 127.0.0.1: the server and its port; shut down (1 s of grace) after."""
    server = Http1Server(app, limits or ListenerLimits(), tls)
    sock = socket.create_server(("127.0.0.1", 0))
    await server.start(sock)
    try:
        yield server, sock.getsockname()[1]
    finally:
        await server.shutdown(1.0)


@contextmanager
def http1_serving_on_thread(app: Any) -> Iterator[int]:
    """`app` served on 127.0.0.1 with its event loop on a thread of its own (as a
    server's process runs it), so a test may block its own thread on requests; the port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="served-loop", daemon=True)
    thread.start()
    sock = socket.create_server(("127.0.0.1", 0))

    async def start() -> Http1Server:
        server = Http1Server(app, ListenerLimits())
        await server.start(sock)
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield sock.getsockname()[1]
    finally:
        asyncio.run_coroutine_threadsafe(server.shutdown(1.0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


async def read_body(receive: Any) -> bytes | None:
    """The request's whole body, or None when the client went away first."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message["body"]
        if not message.get("more_body"):
            return body


class EchoApp:
    """An ASGI app that answers each request with its body, and notes the paths and
    bodies of the requests that reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        if body is None:
            return
        self.paths.append(scope["path"])
        self.bodies.append(body)
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def echo_exchange(request: bytes) -> tuple[EchoApp, bytes]:
    """`request` sent raw to an `EchoApp` served on loopback: the app, and what the
    server sent until it closed the connection (within 10 s)."""
    app = EchoApp()
    async with http1_serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with asyncio.timeout(10):
                writer.write(request)
                return app, await reader.read()
        finally:
            writer.close()

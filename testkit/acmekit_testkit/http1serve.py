"""The project's HTTP/1.1 server (`acmekit.http1`) on an ephemeral loopback port, for the
listener's own tests, and what their ASGI apps share."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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

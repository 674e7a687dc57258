"""A response sent before the request's body was read is the connection's last (the
rest of the body would be read as the next request), and says so with `Connection:
close` (RFC 9112 §9.6): a client told nothing sent its next request on the connection
and got no answer (a 413 from the CA on a 100,000-byte POST, then GET /directory)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.http1serve import http1_serving, read_body


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """413 on /big without reading the body; anything else read, then 200."""
    if scope["path"] != "/big" and await read_body(receive) is None:
        return
    status = 413 if scope["path"] == "/big" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


async def _exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """The answer's head, and what follows until the server closes (or 5 s pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    rest = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return head.lower(), rest


async def test_an_answer_before_the_body_says_close() -> None:
    async with http1_serving(_app) as (_, port):
        head, _ = await _exchange(
            port, b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 100
        )
    assert head.startswith(b"http/1.1 413 ")
    assert b"\r\nconnection: close\r\n" in head


async def test_an_answer_after_the_body_keeps_the_connection() -> None:
    async with http1_serving(_app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):
            writer.write(b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            assert head.startswith(b"http/1.1 200 ") and b"connection: close" not in head
            assert await reader.readexactly(4) == b"done"
        writer.close()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle) -> Iterator[ServerHandle]:
    with running_acmekit_server(tmp_path_factory.mktemp("ca"), dns_port=dns.dns_port) as server:
        yield server


def _tls(ca: ServerHandle) -> ssl.SSLSocket:
    url = urlsplit(ca.directory_url)
    context = ssl.create_default_context(cafile=str(ca.root_path))
    raw = socket.create_connection((url.hostname, url.port), timeout=10)
    return context.wrap_socket(raw, server_hostname=url.hostname)


def test_the_cas_413_before_the_body_says_close(ca: ServerHandle) -> None:
    """The CA's app answers 413 on the Content-Length alone: the body is not yet sent."""
    netloc = urlsplit(ca.directory_url).netloc
    with _tls(ca) as sock:
        sock.sendall(
            f"POST /acme/new-account HTTP/1.1\r\nHost: {netloc}\r\n"
            "Content-Type: application/jose+json\r\nContent-Length: 100000\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(65536)):
            head += chunk
    lines = head.lower().split(b"\r\n")
    assert lines[0].startswith(b"http/1.1 413 ")
    assert b"connection: close" in lines

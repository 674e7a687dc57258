"""Requests pipelined behind a slow one (acmekit.http1, over a real socket on
127.0.0.1). Reading pauses while a request is answered and others wait behind it (RFC
9112 §9.3.2). A waiting request whose body, or the rest of whose head, came in a later
packet was never read: it waited for ever, and with the body deadline it was answered
408 after `header_timeout`, for the server's own slowness (a finalize that waits, say).
Over TLS on asyncio's loop, requests that came with the handshake's last flight paused
the TCP transport under TLS, which resuming the TLS transport never undid."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.http1 import ListenerLimits
from acmekit_testkit.http1serve import http1_serving, read_body

TIMEOUT = 0.3  # header_timeout here, seconds
SLOW = 0.8  # seconds the first request takes to answer: past TIMEOUT


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = await read_body(receive)
    if body is None:
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(SLOW)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"<" + body + b">"})


def _tls(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for localhost, and a client
    context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    return server, ssl.create_default_context(cafile=str(cert_path))


@asynccontextmanager
async def serving(deadline: float, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    async with http1_serving(app, ListenerLimits(header_timeout=deadline), tls) as (_, port):
        yield port


async def _pipeline(
    port: int, first: bytes, later: bytes, tls: ssl.SSLContext | None = None
) -> bytes:
    """Send `first`, then `later` 0.2 s on; all that comes back until the server
    closes (the last request says Connection: close), or 10 s."""
    name = "localhost" if tls else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname=name)
    got = b""
    try:
        writer.write(first)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(later)
        await writer.drain()
        async with asyncio.timeout(10):
            while data := await reader.read(65536):
                got += data
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
    return got


SLOW_REQUEST = b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
LAST = b"Host: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("deadline", [TIMEOUT, 0.0], ids=["deadline", "no-deadline"])
async def test_a_pipelined_body_in_a_later_packet_is_read(deadline: float) -> None:
    first = SLOW_REQUEST + b"POST /next HTTP/1.1\r\n" + LAST
    async with serving(deadline) as port:
        got = await _pipeline(port, first, b"cdef")
    assert got.count(b"HTTP/1.1 200 OK") == 2, got
    assert got.endswith(b"<cdef>"), got


async def test_a_pipelined_body_in_a_later_packet_is_read_over_tls(tmp_path: Path) -> None:
    server_tls, client_tls = _tls(tmp_path)
    first = SLOW_REQUEST + b"POST /next HTTP/1.1\r\n" + LAST
    async with serving(TIMEOUT, server_tls) as port:
        got = await _pipeline(port, first, b"cdef", client_tls)
    assert got.count(b"HTTP/1.1 200 OK") == 2, got
    assert got.endswith(b"<cdef>"), got


async def test_a_pipelined_head_ended_in_a_later_packet_is_read() -> None:
    queued = b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
    first = SLOW_REQUEST + queued + b"POST /third HTTP/1.1\r\nHost"
    async with serving(TIMEOUT) as port:
        got = await _pipeline(port, first, b": x\r\n" + LAST.removeprefix(b"Host: x\r\n") + b"ghij")
    assert got.count(b"HTTP/1.1 200 OK") == 3, got
    assert got.endswith(b"<ghij>"), got


async def test_a_pipelined_body_that_never_comes_is_still_408() -> None:
    """The deadline stops only while the server does not read: once the request is
    reached, its body has `header_timeout` to come."""
    first = SLOW_REQUEST + b"POST /next HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
    async with serving(TIMEOUT) as port:
        got = await _pipeline(port, first, b"c")
    assert got.count(b"HTTP/1.1 200 OK") == 1, got
    assert b"HTTP/1.1 408 " in got and b"request body took too long" in got, got


async def test_a_refusal_in_the_first_flight_over_tls_is_answered(tmp_path: Path) -> None:
    """A request refused as it came with the handshake's last flight (two Hosts here) was
    dropped unanswered on asyncio's loop, and the connection closed after the head
    deadline."""
    server_tls, client_tls = _tls(tmp_path)
    async with serving(5.0, server_tls) as port:
        got = await _pipeline(
            port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"", client_tls
        )
    assert got.startswith(b"HTTP/1.1 400 "), got
    assert b"more than one Host header" in got, got

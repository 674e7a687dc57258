"""What the CA's HTTPS listener answers by itself, before any request reaches the ACME
app: a problem document that links the directory (RFC 8555 §7.1, as every answer of the
app does) and closes the connection; 505 for an HTTP version other than 1.x (RFC 9110
§15.6.6), not the 200 the parser's reading of `HTTP/2.0` as a version led to. Real
requests to `acmekit server` on loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle) -> Iterator[ServerHandle]:
    with running_acmekit_server(tmp_path_factory.mktemp("ca"), dns_port=dns.dns_port) as server:
        yield server


def _answer(ca: ServerHandle, request: bytes) -> tuple[int, dict[bytes, bytes], dict[str, object]]:
    """Status, headers and problem document of the answer; the server must then close."""
    url = urlsplit(ca.directory_url)
    context = ssl.create_default_context(cafile=str(ca.root_path))
    raw = socket.create_connection((url.hostname, url.port), timeout=10)
    with context.wrap_socket(raw, server_hostname=url.hostname) as sock:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            sock.sendall(request)
        answer = b""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := sock.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    return int(lines[0].split(b" ")[1]), headers, json.loads(body)


def _request(ca: ServerHandle, line: str, extra: str = "") -> bytes:
    return f"{line}\r\nHost: {urlsplit(ca.directory_url).netloc}\r\n{extra}\r\n".encode()


@pytest.mark.parametrize(
    ("line", "extra", "status"),
    [
        ("GET /directory HTTP/1.1", "X-Big: " + "a" * 40_000 + "\r\n", 431),
        ("GET /directory HTTP/1.1", "Content-Length: 1x\r\n", 400),
        ("GET /directory HTTP/2.0", "", 505),
        ("GET /directory HTTP/3.0", "", 505),
        ("GET /directory HTTP/0.9", "", 505),
    ],
)
def test_the_listeners_refusals_link_the_directory(
    ca: ServerHandle, line: str, extra: str, status: int
) -> None:
    got, headers, doc = _answer(ca, _request(ca, line, extra))
    assert (got, doc["status"]) == (status, status)
    assert doc["type"] == "urn:ietf:params:acme:error:malformed"
    assert headers[b"link"] == f'<{ca.directory_url}>;rel="index"'.encode()
    assert headers[b"connection"] == b"close"

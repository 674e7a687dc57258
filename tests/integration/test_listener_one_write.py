"""A response leaves the CA's listener as one write (http1: head and body in one
`transport.write`): they arrive in one TLS record, on every request of a kept-alive
connection.

An SSL read returns the plaintext of at most one record, so the first read after a
request holds the whole response only if the server wrote head and body together."""

from __future__ import annotations

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


def _one_read(tls: ssl.SSLSocket, request: bytes) -> tuple[bytes, bytes]:
    """Send `request`; the head and body of what the first read returns."""
    tls.sendall(request)
    data = tls.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_head_and_body_arrive_in_one_record(ca: ServerHandle) -> None:
    url = urlsplit(ca.directory_url)
    context = ssl.create_default_context(cafile=str(ca.root_path))
    host = f"{url.hostname}:{url.port}"
    request = f"GET /directory HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with (
        socket.create_connection((url.hostname or "", url.port or 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=url.hostname) as tls,
    ):
        for _ in range(3):  # kept alive: each response is one write
            head, body = _one_read(tls, request)
            assert head.startswith(b"HTTP/1.1 200")
            lengths = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            assert lengths and lengths[0] > 0
            assert len(body) == lengths[0]
            assert b'"newNonce"' in body

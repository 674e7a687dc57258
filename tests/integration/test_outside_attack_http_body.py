"""A request body that never comes, or comes broken, against the CA as a process over
HTTPS on loopback: it is answered (408, 400) and its connection closed, as a head that
never ends was, instead of holding the connection and its request's task for as long as
the client keeps the socket open."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from acmekit_testkit.acme_raw import HttpRawAcme
from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle

TIMEOUT = 1.0  # the CA's [limits] header_timeout here, in seconds


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle) -> Iterator[ServerHandle]:
    work = tmp_path_factory.mktemp("outside-body")
    limits = {"limits": {"header_timeout": TIMEOUT}}
    with running_acmekit_server(work, dns_port=dns.dns_port, settings=limits) as server:
        yield server


async def _exchange(ca: ServerHandle, head: str, body: bytes) -> tuple[bytes, float]:
    """Send `head` (CRLFs added) and `body` on a fresh TLS connection, then nothing; what
    comes back before the CA closes (at most 10 s), and after how long."""
    url = urlsplit(ca.base_url)
    tls = ssl.create_default_context(cafile=str(ca.root_path))
    reader, writer = await asyncio.open_connection(
        url.hostname, url.port, ssl=tls, server_hostname=url.hostname
    )
    start = time.monotonic()
    writer.write(head.format(host=url.netloc).replace("\n", "\r\n").encode() + body)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    return answer, time.monotonic() - start


POST = "POST /acme/new-order HTTP/1.1\nHost: {host}\nContent-Type: application/jose+json\n"


@pytest.mark.parametrize(
    ("head", "body"),
    [
        (POST + "Content-Length: 100\n\n", b'{"protected": "'),
        (POST + "Transfer-Encoding: chunked\n\n", b"5\r\nab"),
    ],
    ids=["declared", "chunked"],
)
async def test_a_body_that_never_comes_is_408(ca: ServerHandle, head: str, body: bytes) -> None:
    answer, took = await _exchange(ca, head, body)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request body took too long" in answer
    assert took < TIMEOUT + 5


async def test_a_broken_chunk_is_400_at_once(ca: ServerHandle) -> None:
    answer, _ = await _exchange(ca, POST + "Transfer-Encoding: chunked\n\n", b"zz\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


async def test_others_are_served_meanwhile(ca: ServerHandle) -> None:
    held = [
        asyncio.create_task(_exchange(ca, POST + "Content-Length: 100\n\n", b"{"))
        for _ in range(20)
    ]
    acme = HttpRawAcme(ca.base_url, str(ca.root_path))
    assert "newOrder" in await acme.directory()
    await acme.close()
    for answer, _ in await asyncio.gather(*held):
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_nothing_was_left_to_the_log_as_an_error(ca: ServerHandle) -> None:
    assert "Traceback" not in Path(ca.log).read_text()


@pytest.mark.parametrize("order", ["evil first", "evil last"])
async def test_two_host_headers_are_400(ca: ServerHandle, order: str) -> None:
    """RFC 9112 §3.2: a server MUST answer 400 to more than one Host. The CA took the
    last, and served `Host: evil.test` followed by its own name; a proxy in front may
    take the first."""
    hosts = ["evil.test", "{host}"] if order == "evil first" else ["{host}", "evil.test"]
    head = "GET /directory HTTP/1.1\n" + "".join(f"Host: {h}\n" for h in hosts) + "\n"
    answer, _ = await _exchange(ca, head, b"")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"more than one Host header" in answer


async def test_an_absolute_target_names_the_host(ca: ServerHandle) -> None:
    """RFC 9112 §3.2.2: with an absolute-form target the server uses its authority and
    ignores Host. The CA read Host, and answered `GET https://evil.test/directory` with
    its directory; the target's authority is not one of its names: 421."""
    head = "GET https://evil.test/directory HTTP/1.1\nHost: {host}\nConnection: close\n\n"
    answer, _ = await _exchange(ca, head, b"")
    assert answer.startswith(b"HTTP/1.1 421 "), answer[:200]
    own = "GET https://{host}/directory HTTP/1.1\nHost: evil.test\nConnection: close\n\n"
    answer, _ = await _exchange(ca, own, b"")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]

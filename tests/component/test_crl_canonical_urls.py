"""Each CRL shard is served under one URL, the one its certificates name (`shard_url`):
`/crl/00.crl` and `/crl/%30.crl` are 404s, not shard 0 again. Over the real listener on
loopback, which decodes percent-escapes into the path and keeps the raw one."""

from __future__ import annotations

import asyncio

import pytest

from acmekit.server.crl import CrlApp
from acmekit.server.run import Assembly
from acmekit_testkit.http1serve import http1_serving


async def _status(port: int, target: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: crl.test\r\nConnection: close\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return int(head.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/crl/0.crl", 200),
        ("/crl/00.crl", 404),
        ("/crl/000.crl", 404),
        ("/crl/%30.crl", 404),
        ("/crl/0%2Ecrl", 404),
        ("/%63rl/0.crl", 404),
        ("/issuer.der", 200),
        ("/issuer%2Eder", 404),
    ],
)
async def test_one_url_for_each_crl(ca: Assembly, target: str, status: int) -> None:
    assert ca.crl is not None
    async with http1_serving(CrlApp(ca.crl)) as (_, port):
        assert await _status(port, target) == status


async def _head_of(port: int, method: str, target: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"{method} {target} HTTP/1.1\r\nHost: crl.test\r\nConnection: close\r\n\r\n".encode()
    )
    answer = await reader.read()
    writer.close()
    head, _, _ = answer.partition(b"\r\n\r\n")
    return b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"date:"))


@pytest.mark.parametrize("target", ["/crl/0.crl", "/issuer.der", "/crl/"])
async def test_head_answers_as_get(ca: Assembly, target: str) -> None:
    """RFC 9110 §9.3.2: GET's status line and headers, Content-Length too."""
    assert ca.crl is not None
    async with http1_serving(CrlApp(ca.crl)) as (_, port):
        assert await _head_of(port, "HEAD", target) == await _head_of(port, "GET", target)


async def test_a_405_says_what_is_allowed(ca: Assembly) -> None:
    """RFC 9110 §15.5.6: a 405 MUST carry Allow; HEAD is served wherever GET is (§9.1)."""
    assert ca.crl is not None
    async with http1_serving(CrlApp(ca.crl)) as (_, port):
        head = await _head_of(port, "POST", "/crl/0.crl")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert b"\r\nallow: GET, HEAD\r\n" in head + b"\r\n"

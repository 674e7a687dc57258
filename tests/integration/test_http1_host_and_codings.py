"""acmekit.http1 and two framing rules of RFC 9112, over real sockets on 127.0.0.1: an
HTTP/1.1 request without Host is 400 (§3.2), and a transfer coding other than chunked
alone is 501, then the connection closes (§6.1, §7). The parser read `gzip, chunked` as
chunked and gave the app the still encoded body; a request without Host reached the app,
which answered it 421 (misdirected) instead."""

from __future__ import annotations

import json

import pytest

from acmekit_testkit.http1serve import echo_exchange


def _refusal(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close\r\n" in head + b"\r\n"
    return int(head.split(b" ", 2)[1]), json.loads(body)["detail"]


GZIPPED = b"3\r\nabc\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "codings",
    [
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: x-custom ,CHUNKED\r\n",
    ],
    ids=["one-line", "two-lines", "unknown"],
)
async def test_a_coding_other_than_chunked_alone_is_501(codings: bytes) -> None:
    head = b"POST /t HTTP/1.1\r\nHost: ca.test\r\n" + codings + b"\r\n"
    # a second request behind it: the connection ends with the refusal, unanswered
    app, answer = await echo_exchange(
        head + GZIPPED + b"GET /next HTTP/1.1\r\nHost: ca.test\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 501 "), answer[:200]
    assert _refusal(answer) == (501, "only the chunked transfer coding is supported")
    assert app.bodies == []


async def test_chunked_alone_still_serves_and_keeps_the_connection() -> None:
    head = b"POST /t HTTP/1.1\r\nHost: ca.test\r\nTransfer-Encoding: Chunked\r\n\r\n"
    last = b"GET /next HTTP/1.1\r\nHost: ca.test\r\nConnection: close\r\n\r\n"
    app, answer = await echo_exchange(head + GZIPPED + last)
    assert answer.count(b"HTTP/1.1 200 ") == 2
    assert app.bodies == [b"abc", b""]


@pytest.mark.parametrize(
    "request_line",
    [b"GET /t HTTP/1.1", b"GET http://ca.test/t HTTP/1.1"],
    ids=["origin-form", "absolute-form"],
)
async def test_an_http11_request_without_host_is_400(request_line: bytes) -> None:
    app, answer = await echo_exchange(request_line + b"\r\nAccept: */*\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert _refusal(answer) == (400, "an HTTP/1.1 request needs a Host header")
    assert app.bodies == []


async def test_an_http10_request_without_host_is_served() -> None:
    """RFC 9112 §3.2 asks Host of HTTP/1.1 requests only."""
    app, answer = await echo_exchange(b"GET /t HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert app.bodies == [b""]

"""acmekit.http1 and RFC 9112 §6.1 over real sockets on 127.0.0.1: a request that carries
Transfer-Encoding in HTTP/1.0 MUST be treated as faulty framing, answered 400, and its
connection closed. An HTTP/1.0 recipient may not know the field at all, so a proxy in
front and this server could frame such a request differently (request smuggling). The
listener read the body as chunked and handed it to the app, then read on; bytes behind
the request were taken as a next request."""

from __future__ import annotations

import json

import pytest

from acmekit_testkit.http1serve import echo_exchange

CHUNKED = b"3\r\nabc\r\n0\r\n\r\n"
# behind the request, in keep-alive: what a front end that ignored Transfer-Encoding in
# HTTP/1.0 could take for part of the body, and this server for a next request
NEXT = b"GET /smuggled HTTP/1.1\r\nHost: ca.test\r\n\r\n"


FAULTY = "Transfer-Encoding in an HTTP/1.0 request"


@pytest.mark.parametrize(
    ("codings", "detail"),
    [
        (b"Transfer-Encoding: chunked\r\n", FAULTY),
        (b"Transfer-Encoding: gzip, chunked\r\n", FAULTY),  # not 501: the framing is at fault
        (b"Transfer-Encoding: identity\r\n", FAULTY),
        # both framings: the parser refuses it itself, before the head is whole
        (b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", None),
    ],
    ids=["chunked", "gzip-chunked", "identity", "with-content-length"],
)
async def test_http10_with_transfer_encoding_is_400_then_close(
    codings: bytes, detail: str | None
) -> None:
    head = b"POST /t HTTP/1.0\r\nHost: ca.test\r\nConnection: keep-alive\r\n" + codings + b"\r\n"
    app, answer = await echo_exchange(head + CHUNKED + NEXT)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    head_out, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close\r\n" in head_out + b"\r\n"
    problem = json.loads(body)  # the one answer: nothing read after it is answered
    if detail is not None:
        assert problem["detail"] == detail
    assert app.paths == []


async def test_http11_chunked_is_still_served() -> None:
    head = b"POST /t HTTP/1.1\r\nHost: ca.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    last = b"GET /next HTTP/1.1\r\nHost: ca.test\r\nConnection: close\r\n\r\n"
    app, answer = await echo_exchange(head + CHUNKED + last)
    assert answer.count(b"HTTP/1.1 200 ") == 2
    assert app.paths == ["/t", "/next"]


async def test_http10_with_content_length_is_still_served() -> None:
    app, answer = await echo_exchange(b"POST /t HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b"abc")
    assert app.paths == ["/t"]

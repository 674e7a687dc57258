"""The CA's HTTP/1.1 client for CT logs (acmekit.server.ctclient) against a loopback
server that answers as the test says: framing, kept-alive connections and their limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from acmekit.server.ctclient import HttpError, LogClient

Answer = Callable[[bytes], bytes]  # the request (head and body) -> the raw answer


@dataclass
class Peer:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


@asynccontextmanager
async def peer(answer: Answer, close_after: bool = False) -> AsyncIterator[Peer]:
    state = Peer("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        state.writers.append(writer)
        try:
            while True:
                request = await _read_request(reader)
                state.requests.append(request)
                writer.write(answer(request))
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}/log/"
    try:
        yield state
    finally:
        server.close()
        for writer in state.writers:
            writer.close()
        await server.wait_closed()


def _fixed(body: bytes, extra: bytes = b"") -> Answer:
    def answer(_: bytes) -> bytes:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
        return head + extra + b"\r\n" + body

    return answer


async def test_one_connection_carries_every_request_in_turn() -> None:
    async with peer(_fixed(b'{"ok":1}')) as log:
        client = LogClient(log.url, None)
        for _ in range(5):
            got = await client.post("ct/v1/add-chain", b'{"chain":[]}', 1024)
            assert (got.status, got.body) == (200, b'{"ok":1}')
        client.close()
    assert log.connections == 1
    assert len(log.requests) == 5
    first = log.requests[0]
    assert first.startswith(b"POST /log/ct/v1/add-chain HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first
    assert b"\r\nContent-Type: application/json\r\n" in first
    assert first.endswith(b'\r\n\r\n{"chain":[]}')


async def test_concurrent_requests_open_connections_then_reuse_them() -> None:
    async with peer(_fixed(b"{}")) as log:
        client = LogClient(log.url, None)
        for _ in range(3):
            await asyncio.gather(*(client.post("x", b"{}", 64) for _ in range(4)))
        client.close()
    assert log.connections == 4
    assert len(log.requests) == 12


async def test_a_chunked_answer_is_read_with_its_trailers() -> None:
    def chunked(_: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'4;ext=1\r\n{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n'
        )

    async with peer(chunked) as log:
        client = LogClient(log.url, None)
        assert (await client.post("x", b"{}", 64)).body == b'{"a":1}'
        assert (await client.post("x", b"{}", 64)).body == b'{"a":1}'
        client.close()
    assert log.connections == 1


async def test_connection_close_and_http_1_0_are_not_kept() -> None:
    async with peer(_fixed(b"{}", b"Connection: close\r\n"), close_after=True) as log:
        client = LogClient(log.url, None)
        for _ in range(3):
            assert (await client.post("x", b"{}", 64)).status == 200
        client.close()
    assert log.connections == 3

    def old(_: bytes) -> bytes:
        return b"HTTP/1.0 200 OK\r\n\r\n{}"  # delimited by the close (RFC 9112 §6.3)

    async with peer(old, close_after=True) as log:
        client = LogClient(log.url, None)
        assert (await client.post("x", b"{}", 64)).body == b"{}"
        assert (await client.post("x", b"{}", 64)).body == b"{}"
        client.close()
    assert log.connections == 2


async def test_a_connection_the_log_closed_while_idle_is_replaced() -> None:
    async with peer(_fixed(b"{}")) as log:
        client = LogClient(log.url, None)
        assert (await client.post("x", b"{}", 64)).status == 200
        for writer in log.writers:  # the log drops its kept-alive connection
            writer.close()
        await asyncio.sleep(0.05)
        assert (await client.post("x", b"{}", 64)).status == 200
        client.close()
    assert log.connections == 2
    assert len(log.requests) == 2


async def test_answers_past_the_limit_or_not_http_are_refused() -> None:
    async with peer(_fixed(b"x" * 100)) as log:
        client = LogClient(log.url, None)
        with pytest.raises(HttpError, match="larger than 99 bytes"):
            await client.post("x", b"{}", 99)
        assert (await client.post("x", b"{}", 100)).body == b"x" * 100
        client.close()
    async with peer(lambda _: b"SSH-2.0-nope\r\n\r\n") as log:
        client = LogClient(log.url, None)
        with pytest.raises(HttpError, match=r"not an HTTP/1\.x status line"):
            await client.post("x", b"{}", 99)
        client.close()


async def test_an_error_status_comes_back_with_its_body() -> None:
    def refuse(_: bytes) -> bytes:
        body = b'{"error":"bad_request"}'
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async with peer(refuse) as log:
        client = LogClient(log.url, None)
        got = await client.post("x", b"{}", 1024)
        client.close()
    assert (got.status, got.body) == (400, b'{"error":"bad_request"}')


async def test_a_request_cancelled_half_way_does_not_leave_its_connection_pooled() -> None:
    answered = asyncio.Event()

    def slow(_: bytes) -> bytes:
        answered.set()
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"  # 8 bytes short

    async with peer(slow) as log:
        client = LogClient(log.url, None)
        task = asyncio.ensure_future(client.post("x", b"{}", 64))
        await answered.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client._idle == []
        client.close()


async def test_a_log_that_is_down_fails_with_the_address() -> None:
    async with peer(_fixed(b"{}")) as log:
        url = log.url
    client = LogClient(url, None)
    with pytest.raises(OSError, match=r"127\.0\.0\.1"):
        await client.post("x", b"{}", 64)

"""acmekit.http1's `max_header_bytes` counts a head's bytes (request line and header
lines, the blank line ending them included) whatever its method, and alike whether the
head came in one read or in several (over real sockets on 127.0.0.1). A head measured
from its parsed parts took every method to be as long as POST: a GET head of exactly
the cap was refused when it came in two reads and taken in one, and an OPTIONS head
three bytes over the cap was taken."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from acmekit.http1 import ListenerLimits
from acmekit_testkit.http1serve import http1_serving

CAP = 1024


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _head(method: str, size: int) -> bytes:
    start = f"{method} /x HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode()
    head = start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"
    assert len(head) == size
    return head


async def _status(port: int, head: bytes, split: bool) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(10):
            if split:  # the head's start, then the rest once the server has read it
                writer.write(head[:40])
                await writer.drain()
                await asyncio.sleep(0.2)
                writer.write(head[40:])
            else:
                writer.write(head)
            return int((await reader.readline()).split(b" ")[1])
    finally:
        writer.close()


@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS", "DELETE"])
async def test_a_head_is_measured_in_bytes_for_every_method(method: str) -> None:
    async with http1_serving(_app, ListenerLimits(max_header_bytes=CAP)) as (_, port):
        for split in (False, True):
            assert await _status(port, _head(method, CAP), split) == 200, (method, split)
            assert await _status(port, _head(method, CAP + 1), split) == 431, (method, split)

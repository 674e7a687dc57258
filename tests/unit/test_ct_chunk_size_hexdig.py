"""A CT log's chunk size is 1*HEXDIG (RFC 9112 §7.1): `int(text, 16)` also takes a sign,
a "0x" prefix and underscores, so a negative size escaped the HttpError the submitter
counts as the log's failure, and "0x4" or "1_0" framed a body no peer would."""

from __future__ import annotations

import asyncio

import pytest

from acmekit.server.ctclient import HttpError, _chunked


async def _read(raw: bytes) -> bytes:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    return await _chunked(reader, 1024)


@pytest.mark.parametrize("size", [b"-1", b"+4", b"0x4", b"0_4", b"\xd9\xa4"])
async def test_a_chunk_size_is_hex_digits_only(size: bytes) -> None:
    with pytest.raises(HttpError, match="bad chunk size"):
        await _read(size + b'\r\n{"a"\r\n0\r\n\r\n')


async def test_a_chunk_size_with_an_extension_and_upper_case_hex_is_read() -> None:
    body = b"x" * 26
    assert await _read(b"1A;name=v\r\n" + body + b"\r\n0\r\n\r\n") == body

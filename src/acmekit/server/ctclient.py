"""A lean HTTP/1.1 client for the CA's CT logs: JSON POSTs over kept-alive connections.

The CA posts two small bodies per log and certificate (RFC 6962 §4.1 add-pre-chain, then
add-chain) to a handful of fixed URLs. A general client (aiohttp) spends most of its CPU
on what this traffic never needs (cookies, redirects, proxies, multipart, tracing,
header multidicts): against an `acmekit ct` log on loopback it took 140-160 µs of the
CA's CPU a request, this client 45-60 µs (docs/decisions.md, "CT's cost to the CA,
cut"). So, per log, a pool of
kept-alive connections (asyncio streams, TLS for `https://`), a request written as one
buffer, and an answer read as RFC 9112 gives it:

- status line and headers up to the blank line (at most `MAX_HEAD` bytes);
- a body framed by Content-Length or chunked transfer coding (§7.1), else read to the
  end of the connection (§6.3); never more than `limit` bytes in any case;
- a connection goes back to the pool only when its answer was read to the end and
  neither side said `Connection: close` (§9.6).

A kept connection the log closed meanwhile fails before any byte of the answer; the
request is then sent once more on a new connection. add-chain and add-pre-chain may be
repeated: a log answers the same entry with the same SCT (RFC 6962 §4.1, and
docs/ct.md). A request cancelled half way (the CA's timeout) closes its connection.

A request is written and its answer read in two steps (`send`, `Exchange.answer`), so
that one coroutine can write to every log before it reads the first answer: the logs
work at once without a task per log. On a kept connection the write is immediate
(`send_kept`: no await at all).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 16 * 1024
IDLE_PER_LOG = 16  # kept-alive connections a log's pool keeps; more are closed
_ANSWER_ERRORS = (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)


class HttpError(ValueError):
    """An answer that is not HTTP/1.x as this client reads it, or too large."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class _Stale(Exception):
    """A kept connection that ended before any byte of the answer."""


class Exchange:
    """A request written on a connection, its answer not read yet. Every exchange is
    either answered (`answer`) or dropped (`drop`), which closes its connection."""

    def __init__(
        self,
        client: LogClient,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: bytes,
        kept: bool,
    ) -> None:
        self._client = client
        self._reader = reader
        self._writer = writer
        self._request = request
        self._kept = kept

    async def answer(self, limit: int) -> Answer:
        """The answer's status and body (at most `limit` bytes); a kept connection that
        the log closed while idle is replaced and the request sent again on it."""
        client = self._client
        try:
            return await client._receive(self._reader, self._writer, limit, self._kept)
        except _Stale:
            pass  # closed by the log while idle: the request was not taken
        fresh = await client._send_new(self._request)
        return await fresh.answer(limit)

    def drop(self) -> None:
        self._writer.close()


class LogClient:
    """One log's base URL and its pool of kept-alive connections."""

    def __init__(self, url: str, tls: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.https = parts.scheme == "https"
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/").rstrip("/") + "/"
        self.tls = (tls or ssl.create_default_context()) if self.https else None
        default = self.port == (443 if self.https else 80)
        bracketed = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = bracketed if default else f"{bracketed}:{self.port}"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def _head(self, name: str, length: int) -> bytes:
        return (
            f"POST {self.path}{name} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        ).encode("ascii")

    async def post(self, name: str, body: bytes, limit: int) -> Answer:
        """POST `body` (JSON) to `<url>/<name>`; the answer's status and body."""
        return await (await self.send(name, body)).answer(limit)

    def send_kept(self, name: str, body: bytes) -> Exchange | None:
        """The request written now on a kept-alive connection (no await: no task and no
        turn of the event loop), or None when the pool has none open."""
        request = self._head(name, len(body)) + body
        while self._idle:
            reader, writer = self._idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            writer.write(request)
            return Exchange(self, reader, writer, request, kept=True)
        return None

    async def send(self, name: str, body: bytes) -> Exchange:
        """The request written, on a kept connection or a new one; its answer is read
        with `Exchange.answer`."""
        return self.send_kept(name, body) or await self._send_new(
            self._head(name, len(body)) + body
        )

    async def _send_new(self, request: bytes) -> Exchange:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None
        )
        writer.write(request)
        return Exchange(self, reader, writer, request, kept=False)

    async def _receive(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limit: int,
        kept: bool,
    ) -> Answer:
        reusable = False
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if kept and not exc.partial:
                    raise _Stale from None
                raise
            except ConnectionError:
                if kept:
                    raise _Stale from None
                raise
            if len(head) > MAX_HEAD:
                raise HttpError(f"answer head larger than {MAX_HEAD} bytes")
            status, headers = _parse_head(head)
            body, reusable = await _read_body(reader, headers, limit)
            return Answer(status, body)
        finally:
            if reusable and len(self._idle) < IDLE_PER_LOG:
                self._idle.append((reader, writer))
            else:
                writer.close()

    def close(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """RFC 9112 §4 status line and §5 header fields (names lower-cased)."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    # Latin-1 text: str.isdigit takes '²' and '³' as well, on which int() raises.
    if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(f"bad header line: {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if version == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
        headers["connection"] = "close"
    return int(code), headers


async def _read_body(
    reader: asyncio.StreamReader, headers: dict[str, str], limit: int
) -> tuple[bytes, bool]:
    """The body and whether the connection may carry another request."""
    keep = "close" not in headers.get("connection", "").lower()
    coding = headers.get("transfer-encoding", "").lower()
    if coding:
        if coding != "chunked":
            raise HttpError(f"transfer coding {coding!r} is not supported")
        return await _chunked(reader, limit), keep
    length = headers.get("content-length")
    if length is not None:
        if not (length.isascii() and length.isdigit()):
            raise HttpError(f"bad Content-Length {length!r}")
        n = int(length)
        if n > limit:
            raise HttpError(f"answer larger than {limit} bytes")
        return await reader.readexactly(n), keep
    body = await reader.read(limit + 1)  # RFC 9112 §6.3: delimited by the close
    while chunk := await reader.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            break
    if len(body) > limit:
        raise HttpError(f"answer larger than {limit} bytes")
    return body, False


_HEXDIG = re.compile(rb"[0-9A-Fa-f]+")


async def _chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    """RFC 9112 §7.1: chunks, each size in hex, until the last (0); trailers skipped."""
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        # chunk-size = 1*HEXDIG: int(_, 16) also takes a sign, "0x" and "_" ("-1" then
        # raised a plain ValueError from readexactly, past the HttpError counted).
        if not _HEXDIG.fullmatch(size_text):
            raise HttpError(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise HttpError(f"answer larger than {limit} bytes")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError("a chunk does not end with CRLF")
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields, then the blank line
        pass
    return bytes(body)


ANSWER_ERRORS = (*_ANSWER_ERRORS, HttpError)

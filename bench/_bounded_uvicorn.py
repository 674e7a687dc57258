"""bench/http_edge.py's peer: uvicorn's httptools protocol with the bounds that
`acmekit.http1` has (the CA's and the CT log's listeners were served this way before
http1), so the two are compared doing the same work. nginx's
`large_client_header_buffers`, `client_header_timeout`, `keepalive_timeout`,
`limit_conn`.

uvicorn's httptools protocol has none of the first two: a header may grow without end
(httptools gathers it by concatenation, so a 48 MB one cost seconds of CPU) and a
client may take forever to send one. `bounded_protocol` returns a subclass that, around
the parser:

- counts the bytes of a request that arrive before its headers are complete, and past
  `max_header_bytes` answers 431 (RFC 6585 §5) and closes;
- gives each request `header_timeout` seconds from the connection or from the request's
  first byte to complete its headers, then answers 408 (or, if nothing came, closes);
- refuses a connection, with 503, while its address already holds
  `max_connections_per_address`.

It also hands uvicorn a transport that sends what one turn of the event loop wrote as
one write (`_Coalescing`): uvicorn writes a response's head and its body separately,
which under TLS made two records, two send calls and two wake-ups of a waiting client
per response; see docs/decisions.md.

The keep-alive timeout is uvicorn's own. The per-address count is taken once the TLS
handshake is done (asyncio gives the protocol its transport only then); the handshake
itself is bounded by asyncio's 60 seconds. The added work per request is a few
attribute updates and one timer; see docs/decisions.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from acmekit.http1 import ListenerLimits
from acmekit.protocol.problems import ProblemType

log = logging.getLogger(__name__)

LINGER = 1.0  # seconds a refused connection is read (and dropped) before it is closed


class _Coalescing:
    """A transport whose writes within one turn of the loop leave as one write.

    The flush is scheduled with `call_soon`, so it runs before the loop next polls its
    sockets: nothing waits longer than the handler that wrote it. Everything else is the
    wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def bounded_protocol(limits: ListenerLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with `limits`, for `uvicorn.Config(http=...)`; each
    call has its own count of connections per address."""
    return type(
        "BoundedHttpToolsProtocol",
        (_Bounded,),
        {"limits": limits, "per_address": Counter()},
    )


class _Bounded(HttpToolsProtocol):
    limits: ClassVar[ListenerLimits]
    per_address: ClassVar[Counter[str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._in_header = True  # the next bytes belong to a request's head
        self._header_timer: asyncio.TimerHandle | None = None
        self._counted: str | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _Coalescing(transport, self.loop)  # type: ignore[assignment]
        cap = self.limits.max_connections_per_address
        address = self.client[0] if self.client else None
        if cap and address is not None:
            if self.per_address[address] >= cap:
                log.warning("refused a connection from %s: %d already open", address, cap)
                self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections from you")
                return
            self.per_address[address] += 1
            self._counted = address
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted is not None:
            self.per_address[self._counted] -= 1
            if self.per_address[self._counted] <= 0:
                del self.per_address[self._counted]
            self._counted = None
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return  # what a refused client still sends is read and dropped
        super().data_received(data)
        # Counted after parsing: a chunk that completes the head (on_headers_complete
        # ran inside the parser) is a body's business, not the head's.
        if self._in_header and not self.transport.is_closing():
            self._header_bytes += len(data)
            limit = self.limits.max_header_bytes
            if limit and self._header_bytes > limit:
                self._refuse(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"request headers larger than {limit} bytes",
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._in_header = False
        self._header_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._in_header = True
        super().on_response_complete()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None and self.limits.header_timeout:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout, self._header_timed_out
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._header_bytes:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT, "request headers took too long")
        else:
            self.transport.close()

    def _refuse(self, status: HTTPStatus, detail: str) -> None:
        """Answer with a problem document (RFC 8555 §6.7 shape) and close after LINGER
        seconds: closing a socket with unread input sends a reset, which can reach the
        client before the answer does (nginx's lingering close, for the same reason)."""
        self._cancel_header_timer()
        self._refused = True
        body = json.dumps(
            {"type": str(ProblemType.MALFORMED), "detail": detail, "status": int(status)}
        ).encode()
        head = (
            f"HTTP/1.1 {int(status)} {status.phrase}\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.loop.call_later(LINGER, self.transport.close)

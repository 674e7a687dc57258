"""The HTTP/1.1 server of the CA's listeners and of the CT log: an asyncio protocol over
httptools' parser, serving an ASGI 3 app (RFC 9112 message syntax, RFC 9110 semantics),
with the bounds a production server sets on what one client may hold (nginx's
`client_header_timeout`, `large_client_header_buffers`, `client_max_body_size`,
`keepalive_timeout`, `limit_conn`, `ssl_handshake_timeout`). Why not uvicorn:
docs/decisions.md.

How it works. `Http1Server` accepts plain TCP. A connection's client (its address; an
IPv6 one by its /64, `hostport.client_of`) is counted before anything else, then (on
the HTTPS listener) the TLS handshake runs through `loop.start_tls` with its own bound,
so connections that never finish a handshake count against their client and hold the
listener for `handshake_timeout` seconds at most.
Past `max_connections_per_address` a connection is answered 503 (after its handshake);
past twice that it is closed at once, before any TLS.

A `_Connection` feeds what it reads to the parser. Each request, once its head is
complete, becomes an `_Exchange`: the app's `receive` and `send` for that request. One
exchange is answered at a time, in order, by the connection's one task; requests a
client pipelines behind it wait in a queue, and reading pauses while they do (RFC 9112
§9.3.2). A response leaves as one `transport.write` (head and body together: one TLS
record, one send call), framed by Content-Length, or chunked when the app streams it
(§7.1). While the transport asks us to pause writing, the app's `send` waits and no
queued exchange starts, for `send_timeout` at most.

One timer per connection serves every deadline (the head's; the body's, from one read
of it to the next and at a minimum rate; the idle keep-alive's; the wait on a client
that reads nothing): it is moved only when a deadline comes earlier than the one it is
set for, and when it fires it looks at what is due, so a kept-alive request costs no
timer of its own.

Refusals (400 for what the parser rejects, 408, 413, 431, 503) are problem documents
(RFC 8555 §6.7 shape) sent in their turn after any response in flight; the connection
is then read and dropped for `LINGER` seconds and closed: closing a socket with unread
input sends a reset, which can reach the client before the answer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import ssl
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from time import gmtime, time
from typing import Any, cast
from urllib.parse import unquote

import httptools

from acmekit.hostport import client_of

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]

# RFC 8555 §6.7's type, the same on every listener (the CT log's too); spelled out since
# a top-level module imports no package of ours
MALFORMED = "urn:ietf:params:acme:error:malformed"
LINGER = 1.0  # seconds a refused connection is read (and dropped) before it is closed
ASGI = {"version": "3.0", "spec_version": "2.3"}
STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"  # RFC 9110 §10.1.1
NO_BODY_STATUSES = frozenset({204, 304})  # and 1xx: RFC 9112 §6.3
HTTP1_VERSIONS = frozenset({"1.0", "1.1"})
BAD_VERSION = "Invalid HTTP version"  # httptools' text for a version llhttp cannot read
FRAMING = frozenset({b"content-length", b"connection", b"transfer-encoding"})
FRAMING_SIZES = frozenset(map(len, FRAMING))


@dataclass(frozen=True)
class ListenerLimits:
    """What one client may hold of a listener (defaults as nginx's); 0 switches a bound
    off. The CA's `[limits]` table; the CT log's listener has the defaults."""

    max_header_bytes: int = 32 * 1024  # request line and headers; more is 431
    header_timeout: float = 60.0  # seconds to send a request's headers; then 408
    keepalive_timeout: float = 75.0  # seconds an idle connection is kept open
    max_connections_per_address: int = 256  # more at once from one client: 503
    handshake_timeout: float = 10.0  # seconds for a TLS handshake, counted in the cap above
    max_body_bytes: int = 1024 * 1024  # a request body (nginx's client_max_body_size); 413
    # A body has header_timeout between reads, and must average this many bytes a second
    # (after a first header_timeout of grace: Apache's mod_reqtimeout MinRate); then 408
    min_body_rate: int = 1024
    send_timeout: float = 60.0  # seconds a response may wait on a client that reads nothing
    shutdown_timeout: float = 10.0  # seconds requests in flight have after SIGTERM


class Admission(Enum):
    SERVE = "serve"
    REFUSE = "refuse"  # answered 503
    DROP = "drop"  # closed at once


# IMF-fixdate's names and two-digit fields (RFC 9110 §5.6.7), looked up
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))


class _Date:
    """The Date header (RFC 9110 §6.6.1), formatted once per second: the clock is read as
    a float and compared with the next second's start (an `int()` a response fewer)."""

    def __init__(self) -> None:
        self._next = 0.0  # when the line is next due
        self._line = b""

    def line(self) -> bytes:
        now = time()
        if now >= self._next or now < self._next - 1.0:  # a second on, or set back
            second = int(now)
            self._next = second + 1.0
            self._line = imf_fixdate(second)
        return self._line


def imf_fixdate(second: int) -> bytes:
    """The Date header line for `second` (since the epoch, UTC) in IMF-fixdate (RFC 9110
    §5.6.7), its fields looked up in tables: what `email.utils.formatdate(usegmt=True)`
    writes (the same for every year 1-9999), in a quarter of its time (it builds
    a datetime and its time tuple, and formats seven fields with `%`). A listener that
    serves a request a second or less often makes one per request, from cold caches."""
    t = gmtime(second)
    two, year = _TWO_DIGITS, t.tm_year
    return (
        f"date: {_DAY_NAMES[t.tm_wday]}, {two[t.tm_mday]} {_MONTH_NAMES[t.tm_mon - 1]} "
        f"{two[year // 100]}{two[year % 100]} "
        f"{two[t.tm_hour]}:{two[t.tm_min]}:{two[t.tm_sec]} GMT\r\n"
    ).encode()


DATE = _Date()


def problem_response(status: HTTPStatus, detail: str, index: str | None = None) -> bytes:
    """A whole response, closing the connection, for a refusal made by the server; with
    `index` (an ACME directory's URL), its Link rel="index" (RFC 8555 §7.1). No
    Replay-Nonce: nonces are the app's to issue, and the connection closes anyway."""
    body = json.dumps({"type": MALFORMED, "detail": detail, "status": int(status)}).encode()
    link = "" if index is None else f'link: <{index}>;rel="index"\r\n'
    head = (
        f"HTTP/1.1 {int(status)} {status.phrase}\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        f"{link}"
        "connection: close\r\n"
    ).encode()
    return head + DATE.line() + b"\r\n" + body


class Http1Server:
    """One listener: `start` on a bound socket, `shutdown` to stop (in-flight requests
    are answered, within a bound). `tls` makes it HTTPS; `index`, an ACME directory's
    URL, is linked from the listener's own refusals as from the app's answers."""

    def __init__(
        self,
        app: App,
        limits: ListenerLimits,
        tls: ssl.SSLContext | None = None,
        index: str | None = None,
    ):
        self.app = app
        self.limits = limits
        self.tls = tls
        self.index = index
        self.per_address: Counter[str] = Counter()
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._server: asyncio.Server | None = None
        self._gone: asyncio.Event | None = None

    def refusal(self, status: HTTPStatus, detail: str) -> bytes:
        return problem_response(status, detail, self.index)

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self, loop), sock=sock)

    def admit(self, address: str | None) -> Admission:
        """Count a new connection from `address` (RFC 9112 §9.7 asks nothing here; this is
        nginx's `limit_conn`). Refused ones are counted too, while they are open."""
        cap = self.limits.max_connections_per_address
        if not cap or address is None:
            return Admission.SERVE
        held = self.per_address[address]
        if held >= 2 * cap:
            return Admission.DROP
        self.per_address[address] = held + 1
        return Admission.SERVE if held < cap else Admission.REFUSE

    def release(self, address: str) -> None:
        left = self.per_address[address] - 1
        if left > 0:
            self.per_address[address] = left
        else:
            del self.per_address[address]

    def forget(self, conn: _Connection) -> None:
        self.connections.discard(conn)
        if not self.connections and self._gone is not None:
            self._gone.set()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; close idle connections; let requests in flight be answered for
        up to `grace` seconds, then close whatever is left."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        self._gone = asyncio.Event()
        for conn in list(self.connections):
            conn.shut()
        if self.connections:
            try:
                await asyncio.wait_for(self._gone.wait(), grace)
            except TimeoutError:
                log.warning("%d connection(s) cut at shutdown", len(self.connections))
        for conn in list(self.connections):
            conn.abort()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event that SIGTERM or SIGINT sets, while the block runs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def serve_until(
    stop: asyncio.Event, servers: list[tuple[Http1Server, socket.socket]], grace: float
) -> None:
    """Each listener on its socket until `stop` is set; then requests in flight get
    `grace` seconds to be answered."""
    for server, sock in servers:
        await server.start(sock)
    await stop.wait()
    log.info("stopping: answering requests in flight")
    await asyncio.gather(*(server.shutdown(grace) for server, _ in servers))


def _no_line_break(head: bytes, lines: int = 0) -> None:
    """Refuse a response header with CR or LF in its name or value (RFC 9110 §5.5): `head`
    must hold `lines` lines each ending in CRLF, and no other CR or LF. Counted, not
    searched with `in` per header: `b"\n" in value` first tries the needle as an integer,
    and CPython formats and drops a TypeError each time (over 2,000 instructions a test)."""
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise ValueError("a header with a line break")


class _Exchange:
    """One request and its response: the app's `receive` and `send`."""

    __slots__ = (
        "body_done", "body_given", "chunked", "chunks", "conn", "cut", "disconnected",
        "expect_continue", "finished", "head_only", "headers", "headers_sent",
        "keep_alive", "refusal", "scope", "started", "status", "waiter",
    )  # fmt: skip

    def __init__(self, conn: _Connection, scope: Scope, keep_alive: bool, expect: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect
        self.head_only = scope["method"] == "HEAD"
        self.chunks: list[bytes] = []
        self.body_done = False  # the parser has the whole body
        self.body_given = False  # ... and the app has had it
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.refusal: bytes | None = None  # answered by the server, not the app
        self.cut = False  # its app is cancelled: the server answers instead
        self.started = False
        self.finished = False
        self.chunked = False
        self.headers_sent = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def receive(self) -> Message:
        if self.expect_continue and not self.body_done and not self.started:
            self.expect_continue = False
            self.conn.write(CONTINUE)
        while not self.chunks and not self.body_done and not self.disconnected:
            self.waiter = self.conn.loop.create_future()
            await self.waiter
        if self.disconnected:
            return {"type": "http.disconnect"}
        if self.chunks or not self.body_given:
            body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks = []
            self.body_given = self.body_done
            return {"type": "http.request", "body": body, "more_body": not self.body_done}
        while not self.disconnected and not self.finished:  # ASGI: then only disconnect
            self.waiter = self.conn.loop.create_future()
            await self.waiter
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("the response has started already")
            self.started = True
            self.status = message["status"]
            self.headers = message.get("headers", [])
        elif kind == "http.response.body":
            if not self.started or self.finished:
                raise RuntimeError("a response body out of turn")
            more = message.get("more_body", False)
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = bytes(body)
            data = self._framed(body) if self.headers_sent else self._head(body, more)
            if not more:
                self.finished = True
                if self.chunked:
                    data += b"0\r\n\r\n"
            self.conn.write(data)
            if not more:
                self.conn.finished(self)
            elif self.conn.write_paused:
                await self.conn.drained()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _framed(self, body: bytes) -> bytes:
        if self.head_only or not body:
            return b""
        if self.chunked:
            return b"%x\r\n%b\r\n" % (len(body), body)
        return body

    def _head(self, body: bytes, more: bool) -> bytes:
        """The status line and headers, with the first (or only) piece of the body."""
        self.headers_sent = True
        status = self.status
        line = STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode()
        parts = [line]
        length = False
        for name, value in self.headers:
            if len(name) in FRAMING_SIZES:  # else not one: lowered only if it may be
                lower = name.lower()
                if lower in FRAMING:
                    if lower == b"content-length":
                        length = True
                    else:  # ours to say, below (RFC 9112 §6.1, §9.6)
                        _no_line_break(name + value)
                        if lower == b"connection" and value.lower() == b"close":
                            self.keep_alive = False
                        continue
            parts += (name, b": ", value, b"\r\n")
        theirs = len(parts)  # the status line, then four parts to each line of the app's
        bodiless = status < 200 or status in NO_BODY_STATUSES
        if not length and not bodiless and not self.head_only:
            if not more:
                parts.append(b"content-length: %d\r\n" % len(body))
            elif self.scope["http_version"] == "1.1":
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False  # the body ends where the connection does
        if not self.body_done:
            # Answered before its body was read (a 413 on Content-Length): the rest of
            # the body would be read as the next request, so the connection ends with
            # this answer (`finished`), and the answer says so (RFC 9112 §9.6): a client
            # told nothing sends its next request on it and gets no answer.
            self.keep_alive = False
        if not self.keep_alive or self.conn.server.stopping:
            self.keep_alive = False
            parts.append(b"connection: close\r\n")
        parts += (DATE.line(), b"\r\n")
        head = b"".join(parts)
        _no_line_break(head, 1 + (theirs - 1) // 4 + len(parts) - theirs)  # ours: a line each
        return head if bodiless else head + self._framed(body)


class _Connection(asyncio.Protocol):
    """One client connection: parser callbacks, the exchanges, the deadlines."""

    transport: asyncio.Transport

    def __init__(self, server: Http1Server, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.limits = server.limits
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.counted: str | None = None
        self.handshake: Coroutine[Any, Any, asyncio.Transport | None] | None = None
        self._refuse_after_tls = False
        self.ready = False  # TLS, if any, is up
        self.closed = False
        self.ignoring = False  # input is read and dropped (after a refusal)
        self.read_paused = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        # the head being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect = False
        self.hosts = 0  # Host headers in it
        self.codings: list[bytes] = []  # its transfer codings, every Transfer-Encoding's
        self.length = 0  # the Content-Length of the request being parsed
        self.body_bytes = 0  # of its body, so far
        self.in_head = False  # a request's head has begun and is not complete
        self.began = False  # ... in the chunk being parsed
        self.head_bytes = 0  # read while the head was unfinished
        self.read_size = 0  # of the chunk being parsed
        # a chunked body's trailer section (RFC 9112 §7.1.2), bounded as a head is: a
        # chunk's header came with no data after it (the last chunk's, size 0); its
        # body's size then, and the bytes read since, less the read it came in
        self.chunk_head = False
        self.chunk_body = 0
        self.trailer_bytes = 0
        # deadlines: one timer for all
        self.head_since: float | None = None
        self.body_since: float | None = None  # the end of the head whose body is awaited
        self.body_last = 0.0  # the last read while that body is awaited
        self.body_base = 0  # its bytes read before body_since (when reading resumed)
        self.write_since: float | None = None  # the transport asked us to pause writing
        self.idle_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        # exchanges
        self.current: _Exchange | None = None  # being answered
        self.parsing: _Exchange | None = None  # its body being read
        self.queue: deque[_Exchange] = deque()
        self.task: asyncio.Task[None] | None = None  # runs the exchanges: `_serve`
        self.running: _Exchange | None = None  # whose app the task is in
        self.idle: asyncio.Future[None] | None = None  # the task waits for an exchange

    # the connection ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        here = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.local = (str(here[0]), int(here[1])) if isinstance(here, tuple) else None
        self.shared_scope: Scope = {  # what every request of the connection shares
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1",
            "server": self.local,
            "client": self.client,
            "scheme": "https" if self.server.tls is not None else "http",
            "method": "GET",
            "root_path": "",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": [],
        }
        # an IPv6 client by its /64 (RFC 6177): one subscriber's addresses count as one
        address = client_of(peer) or None
        verdict = self.server.admit(address)
        if verdict is Admission.DROP:
            log.warning("closed a connection from %s before TLS: far over the cap", address)
            self.transport.abort()
            return
        if address is not None and self.limits.max_connections_per_address:
            self.counted = address
        refuse = verdict is Admission.REFUSE
        if self.server.tls is None:
            self._ready(refuse)
        else:
            self._refuse_after_tls = refuse
            bound = self.limits.handshake_timeout or None  # 0: asyncio's own 60 s
            self.handshake = self.loop.start_tls(
                self.transport,
                self,
                self.server.tls,
                server_side=True,
                ssl_handshake_timeout=bound,
                ssl_shutdown_timeout=bound,
            )
            self._handshake_step(None)

    def _handshake_step(self, _: object) -> None:
        """Drive `start_tls` as a task would. Its first step (which hands the transport to
        the TLS protocol) must run here, inside `connection_made`: uvloop starts reading
        as soon as that returns, and a task's first step would run a loop turn later,
        after the ClientHello may have reached this (HTTP) protocol."""
        assert self.handshake is not None
        try:
            waiting = self.handshake.send(None)
        except StopIteration as done:
            self._handshake_done(done.value, None)
        except Exception as exc:  # a reset, a timeout, what the TLS stack refused
            self._handshake_done(None, exc)
        else:
            waiting.add_done_callback(self._handshake_step)

    def _handshake_done(self, tls: asyncio.Transport | None, exc: Exception | None) -> None:
        self.handshake = None
        if tls is None or self.closed:
            log.debug("TLS handshake with %s failed: %s", self.client, exc)
            self.transport.abort()
            self._forget()
            return
        raw, self.transport = self.transport, tls
        if self.read_paused:
            # asyncio's TLS hands requests that came with the handshake's last flight to
            # data_received before start_tls returns: pipelined ones paused reading on
            # the TCP transport, under TLS, and resuming the TLS one never undid it (the
            # connection read nothing more). The pause moves to the TLS transport.
            raw.resume_reading()
            tls.pause_reading()
        self._ready(self._refuse_after_tls)

    def _ready(self, refuse: bool) -> None:
        self.ready = True
        if refuse:
            cap = self.limits.max_connections_per_address
            log.warning("refused a connection from %s: %d already open", self.counted, cap)
            self.fail(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections from you")
            return
        if self.server.stopping:
            self.transport.close()
            return
        now = self.loop.time()
        if self.limits.header_timeout:  # a connection that never sends is closed
            self.head_since = now
            self._want(now + self.limits.header_timeout)
        self.idle_since = now
        if self.limits.keepalive_timeout:
            self._want(now + self.limits.keepalive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None and not self.idle.done():
            self.idle.set_result(None)  # the task ends (woken first: before shutdown's)
        self._forget()
        for ex in (self.current, *self.queue):
            if ex is not None:
                ex.disconnected = True
                ex.wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _forget(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.counted is not None:
            self.server.release(self.counted)
            self.counted = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server.forget(self)

    def eof_received(self) -> bool | None:
        # A client may half-close after its request (RFC 9112 §9.6): answer, then close.
        if self.current is not None and self.server.tls is None:
            self._no_more()
            return True
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        # A client that asks and never reads (pipelining, or a streamed answer) would hold
        # the connection, its task and what is buffered for as long as it kept the socket
        # open: the wait for the transport to drain is bounded (nginx's send_timeout).
        if self.limits.send_timeout and not self.closed:
            self.write_since = self.loop.time()
            self._want(self.write_since + self.limits.send_timeout)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_since = None
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None
        if self.current is None:
            self._next()

    async def drained(self) -> None:
        if self.write_paused and not self.closed:
            if self._drain is None:
                self._drain = self.loop.create_future()
            await self._drain

    def write(self, data: bytes) -> None:
        if data and not self.closed and not self.transport.is_closing():
            self.transport.write(data)

    def shut(self) -> None:
        """Shutdown: close once what is in flight is answered."""
        if self.handshake is not None:
            self.transport.abort()  # its waiter fails: start_tls cleans up
            self._forget()
        elif self.current is None:
            self.transport.close()
        else:
            self.queue.clear()  # pipelined, not begun: the client asks again elsewhere
            self._no_more()

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.transport.abort()
        self._forget()

    def _no_more(self) -> None:
        """Answer the requests read so far, then close: nothing more is read."""
        self.ignoring = True
        last = self.queue[-1] if self.queue else self.current
        if last is not None:
            last.keep_alive = False

    # reading ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.ignoring or self.closed:
            return
        self.began = False
        self.read_size = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._no_more()  # no protocol switch here: answer what came, then close
        except httptools.HttpParserError as exc:
            log.debug("bad request from %s: %s", self.client, exc, exc_info=exc.__context__)
            if str(exc) == BAD_VERSION:  # llhttp's HPE_INVALID_VERSION: HTTP/3.0, HTTP/1.2
                self._unsupported_version(None)
            else:
                self.fail(HTTPStatus.BAD_REQUEST, "the request is not HTTP/1.1 as we read it")
            return
        if self.body_since is not None and self.limits.header_timeout:
            # A body's deadline is one of progress: each read moves it on (`_tick` holds
            # the body to its minimum rate too).
            self.body_last = now = self.loop.time()
            self._want(now + self.limits.header_timeout)
        if self.chunk_head and not self.ignoring and self.body_bytes == self.chunk_body:
            # No data since a chunk's header: the trailer section is being read (a chunk
            # of data would have given its first byte). Counted from the read after the
            # one the last chunk's header came in, as an unfinished head is (that read
            # was taken off in on_chunk_header).
            self.trailer_bytes += len(data)
            cap = self.limits.max_header_bytes
            if cap and self.trailer_bytes > cap:
                self.fail(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"request trailers larger than {cap} bytes",
                )
                return
        if self.in_head and not self.ignoring:
            # An unfinished head: a chunk it began in is counted from the next one (what
            # came before it in the chunk, whole requests, is not its size), so this cap
            # holds to within one read; a finished head is measured exactly (`_head_size`).
            if not self.began:
                self.head_bytes += len(data)
            cap = self.limits.max_header_bytes
            if cap and self.head_bytes > cap:
                self.fail(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"request headers larger than {cap} bytes",
                )
                return
            if self.head_since is None and self.limits.header_timeout:
                self.head_since = self.loop.time()
                self._want(self.head_since + self.limits.header_timeout)
        if self.queue and not self.read_paused:
            self._pause_reading()  # requests pipelined behind the one in flight

    def on_message_begin(self) -> None:
        self.in_head = True
        self.began = True
        self.head_bytes = 0
        self.url = b""
        self.headers = []
        self.expect = False
        self.hosts = 0
        self.codings = []
        self.length = 0
        self.idle_since = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self.length = int(value)  # the parser has checked it is digits
        elif name == b"host":
            self.hosts += 1
        elif name == b"transfer-encoding":
            # RFC 9110 §5.3: several field lines are one comma-separated list
            self.codings += [c.strip().lower() for c in value.split(b",")]
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        self.body_bytes = 0
        self.head_since = None
        if self.ignoring:
            return
        cap = self.limits.max_header_bytes
        # A head begun and ended in one read is no larger than the read: measured only
        # if it may be over the cap (adding up its size in each callback cost more).
        if cap and (not self.began or self.read_size > cap) and self._head_size() > cap:
            self.fail(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request headers larger than {cap} bytes",
            )
            return
        if self.hosts > 1:
            # RFC 9112 §3.2: a server MUST answer 400. Which one counts would be this
            # server's guess (it took the last), and a proxy in front may guess the other.
            self.fail(HTTPStatus.BAD_REQUEST, "more than one Host header")
            return
        if self.codings and self.parser.get_http_version() == "1.0":
            # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request MUST be treated as
            # faulty framing (a 1.0 hop in front may not know the field and frame the
            # body differently), so 400, then close. The parser read the body as chunked
            # and then read on, on a kept connection.
            self.fail(HTTPStatus.BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request")
            return
        if self.codings and self.codings != [b"chunked"]:
            # RFC 9112 §6.1, §7: a transfer coding we do not decode (gzip, compress,
            # deflate) is 501, then close. The parser reads a body whose last coding is
            # chunked as if it were the only one (the app got the still gzipped bytes),
            # and itself refuses chunked twice (400).
            self.fail(HTTPStatus.NOT_IMPLEMENTED, "only the chunked transfer coding is supported")
            return
        scope = self._scope()
        if scope is None:
            self.fail(HTTPStatus.BAD_REQUEST, "the request target is not a path we can read")
            return
        version = scope["http_version"]
        if version != "1.1" and version not in HTTP1_VERSIONS:  # the parser takes 0.9, 2.0
            self._unsupported_version(version)
            return
        if not self.hosts and version == "1.1":
            # RFC 9112 §3.2: an HTTP/1.1 request without Host is 400 (an absolute target
            # names the host, but its client MUST still send Host). The app answered 421
            # to it: "not for this server", not "not a valid request".
            self.fail(HTTPStatus.BAD_REQUEST, "an HTTP/1.1 request needs a Host header")
            return
        keep_alive = self.parser.should_keep_alive() and not self.server.stopping
        ex = _Exchange(self, scope, keep_alive, self.expect and version == "1.1")
        cap = self.limits.max_body_bytes
        if cap and self.length > cap:
            self._refuse_body(ex, cap)  # before 100-continue: the body need not come
            return
        self.parsing = ex
        if self.limits.header_timeout:
            # The body is bounded in time as the head is: without it, headers that
            # promise a body that never comes held the connection, and its request's
            # task, for as long as the client kept the socket open (nginx bounds it as
            # client_body_timeout). Armed in data_received only if the body is still
            # unfinished there: most requests end in the read their head ends in.
            self.body_since = self.loop.time()
            self.body_base = 0
        self._enqueue(ex)

    def _head_size(self) -> int:
        """The head's size as parsed: the request line, the header lines and the blank
        line, as many bytes as the head read when it is written plainly (one space in
        the request line, `name: value`), so a head comes to the same size in one read
        (where the read's size bounds it) as in several."""
        # the method, a space, the target, " HTTP/1.1\r\n", and the closing "\r\n"
        size = len(self.parser.get_method()) + len(self.url) + 14
        for name, value in self.headers:
            size += len(name) + len(value) + 4  # ": " and CRLF
        return size

    def _scope(self) -> Scope | None:
        url = self.url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        else:  # absolute form (RFC 9112 §3.2.2) or `*`
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                return None
            # `*` is its own path; an absolute target with none is `/` (RFC 9112 §3.2.2)
            raw_path, query = parsed.path or b"/", parsed.query or b""
            if parsed.host:
                # RFC 9112 §3.2.2: the target's authority, not the Host header, names
                # the host (the app answers only its own names, and builds URLs on it).
                host = b"[%s]" % parsed.host if b":" in parsed.host else parsed.host
                authority = host + (b":%d" % parsed.port if parsed.port else b"")
                self.headers = [h for h in self.headers if h[0] != b"host"]
                self.headers.append((b"host", authority))
        try:
            text = raw_path.decode("ascii")
        except UnicodeDecodeError:
            return None
        scope = self.shared_scope.copy()
        scope["http_version"] = self.parser.get_http_version()
        scope["method"] = self.parser.get_method().decode("ascii")
        scope["path"] = unquote(text) if "%" in text else text
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        scope["headers"] = self.headers
        return scope

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.finished:  # answered already: the rest is dropped
            return
        ex.chunks.append(body)
        self.body_bytes += len(body)
        cap = self.limits.max_body_bytes
        if cap and self.body_bytes > cap:  # a chunked body (RFC 9112 §7.1) past the cap
            ex.disconnected = True
            ex.wake()
            self.parsing = None
            self._refuse_body(ex, cap)
            return
        if ex.waiter is not None:
            ex.wake()

    def on_chunk_header(self) -> None:
        self.chunk_head = True
        self.chunk_body = self.body_bytes
        self.trailer_bytes = -self.read_size  # this read is not counted (data_received)
        # Trailer fields come after a chunk's header only, and reach on_header as header
        # fields do: they go to a list of their own, not the one the request's scope
        # holds (RFC 9110 §6.5.1: not merged into the header section), and are dropped.
        # (Bounded by the count above; the next request's head starts a new list.)
        self.headers = []

    def on_message_complete(self) -> None:
        self.chunk_head = False
        ex = self.parsing
        self.parsing = None
        self.body_since = None
        if ex is not None:
            ex.body_done = True
            if ex.waiter is not None:
                ex.wake()

    # exchanges ------------------------------------------------------------------------

    def _enqueue(self, ex: _Exchange) -> None:
        if self.current is None and not self.write_paused:
            self._start(ex)
        else:
            self.queue.append(ex)

    def _start(self, ex: _Exchange) -> None:
        self.current = ex
        self.idle_since = None
        if self.task is None:
            self.task = self.loop.create_task(self._serve())
        elif self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    async def _serve(self) -> None:
        """The connection's one task: each exchange in turn, as `_start` makes it current
        (a task per request cost its creation and asyncio's registration of it, about
        4,800 instructions a request). An exchange refused while its app runs (413 or 408
        in its body) is cancelled alone: the cancellation is taken back and the loop goes
        on. The next exchange begins when an app returns (this server's apps return with
        their last `send`), in the same context (contextvars): an app must reset what it
        sets. The task ends when the connection has closed and nothing is left to
        answer."""
        try:
            while True:
                ex = self.current
                if ex is None:
                    if self.closed:
                        return
                    self.idle = self.loop.create_future()
                    await self.idle
                    self.idle = None
                    continue
                if ex.refusal is not None:
                    self.write(ex.refusal)
                    ex.finished = True
                    self.finished(ex)
                    continue
                self.running = ex
                try:
                    await self.server.app(ex.scope, ex.receive, ex.send)
                except asyncio.CancelledError:
                    if not ex.cut:
                        raise  # the connection is aborted, or the loop ends
                except Exception:
                    log.exception("the app failed on %s %s", ex.scope["method"], ex.scope["path"])
                self.running = None
                if ex.cut:  # `_refuse` cancelled it, and answers in its place
                    ex.cut = False
                    cast(asyncio.Task[None], self.task).uncancel()
                if ex.finished:
                    continue
                if not ex.started and not self.closed:
                    self.write(
                        self.server.refusal(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
                    )
                ex.keep_alive = False  # a response cut short ends the connection
                ex.finished = True
                self.finished(ex)
        finally:
            if not self.closed:  # the task was cancelled, or failed: nothing would answer
                self.transport.abort()

    def finished(self, ex: _Exchange) -> None:
        """`ex` has been answered: close, or take the next request."""
        if ex is not self.current:
            return
        if ex.waiter is not None:
            ex.wake()  # a `receive` waiting past the body learns that it is over
        self.current = None
        if self.parsing is ex:  # answered before its body was read: not reusable
            ex.keep_alive = False
        if ex.refusal is not None:
            self.loop.call_later(LINGER, self.transport.close)
            return
        if not ex.keep_alive or self.server.stopping:
            if self.parsing is ex or self.in_head:  # unread input: close after a while
                self.ignoring = True
                self.loop.call_later(LINGER, self.transport.close)
            else:
                self.transport.close()
            return
        self._next()

    def _next(self) -> None:
        if self.queue:
            if self.write_paused:
                return
            self._start(self.queue.popleft())
            if not self.queue:
                # The request just started may be pipelined with its body still to
                # come: read it (it was never read while reading was paused, and the
                # request waited for ever, or its body deadline ran out).
                self._resume_reading()
            return
        if self.read_paused:
            self._resume_reading()
        if self.ignoring or self.closed:
            return
        self.idle_since = now = self.loop.time()
        if self.limits.keepalive_timeout and not self.in_head:
            due = now + self.limits.keepalive_timeout
            if self.timer is None or due < self.timer_at:  # else `_tick` moves it on
                self._want(due)

    def _pause_reading(self) -> None:
        """Stop reading while pipelined requests wait (RFC 9112 §9.3.2). What is not read
        cannot be late: the deadlines of a head or body being read stop, and start
        afresh when reading resumes (else a request pipelined behind a slow one, its
        body in a later packet, was answered 408 for the server's own slowness)."""
        self.read_paused = True
        self.transport.pause_reading()
        self.head_since = None
        self.body_since = None

    def _resume_reading(self) -> None:
        if not self.read_paused:
            return
        self.read_paused = False
        self.transport.resume_reading()
        if not self.limits.header_timeout or self.ignoring or self.closed:
            return
        now = self.loop.time()
        if self.in_head:
            self.head_since = now
            self._want(now + self.limits.header_timeout)
        if self.parsing is not None:
            self.body_since = self.body_last = now
            self.body_base = self.body_bytes
            self._want(now + self.limits.header_timeout)

    # refusals ---------------------------------------------------------------------

    def fail(self, status: HTTPStatus, detail: str) -> None:
        """Answer `status` in turn (after what is in flight), then close."""
        self.ignoring = True
        self.in_head = False
        self.head_since = None
        self.body_since = None
        reading, self.parsing = self.parsing, None
        if not self.ready and self.handshake is None:
            return
        # (A handshake still pending here is asyncio's TLS handing over what came with
        # its last flight before start_tls returns: the refusal is answered, written
        # after the transport is the TLS one. Dropped, the client got nothing, and the
        # connection closed after header_timeout.)
        if reading is not None and not reading.finished:
            # Input gone wrong inside a body (a bad chunk, RFC 9112 §7.1): its request
            # gets the refusal, instead of waiting for a body that can no longer come
            # (with the refusal queued behind it, never sent).
            self._refuse(reading, status, detail)
            return
        ex = _Exchange(self, {"method": "-", "path": "-"}, False, False)
        ex.refusal = self.server.refusal(status, detail)
        self._enqueue(ex)  # after the requests read before it

    def _unsupported_version(self, version: str | None) -> None:
        """RFC 9110 §15.6.6: 505 for a major version this server does not speak (only
        HTTP/1.x here), saying which it does; then close."""
        what = "this HTTP version" if version is None else f"HTTP/{version}"
        self.fail(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"{what} is not supported: use HTTP/1.1")

    def _refuse_body(self, ex: _Exchange, cap: int) -> None:
        self._refuse(ex, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {cap} bytes")

    def _body_late(self) -> None:
        """The body of the request being read did not come in time: 408, then close."""
        ex, self.parsing = self.parsing, None
        self.body_since = None
        if ex is None or ex.finished:
            return
        self._refuse(ex, HTTPStatus.REQUEST_TIMEOUT, "request body took too long")

    def _refuse(self, ex: _Exchange, status: HTTPStatus, detail: str) -> None:
        """Answer `ex`, whose body is being read, with `status` instead of its app's
        answer (unless that has begun), then close."""
        refusal = _Exchange(self, ex.scope, False, False)
        refusal.refusal = self.server.refusal(status, detail)
        if ex is self.current and ex.started:
            self._no_more()  # already answering: that answer is the last
            return
        if ex is self.current:
            # Its app is still reading the body, so has done nothing yet: it is cancelled
            # (if it has begun) and the refusal takes its turn.
            self.current = None
            ex.finished = True
            if self.running is ex and self.task is not None:
                ex.cut = True
                self.task.cancel()
        else:
            with contextlib.suppress(ValueError):
                self.queue.remove(ex)
        self.ignoring = True
        self._enqueue(refusal)

    # deadlines ----------------------------------------------------------------------

    def _want(self, due: float) -> None:
        """Have the timer fire by `due`."""
        if self.timer is None or due < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(due, self._tick)
            self.timer_at = due

    def _tick(self) -> None:
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        if self.write_since is not None and self.limits.send_timeout:
            due = self.write_since + self.limits.send_timeout
            if now < due:
                self._want(due)
            else:
                log.info("closed a connection from %s: it read nothing for a while", self.client)
                self.queue.clear()  # pipelined, not begun: nobody reads their answers
                self.transport.abort()  # closing would wait for the buffer to drain
                return
        if self.body_since is not None and self.limits.header_timeout:
            due = self.body_last + self.limits.header_timeout  # since the last read ...
            rate = self.limits.min_body_rate
            if rate:  # ... and at the minimum rate since the body began
                got = self.body_bytes - self.body_base
                due = min(due, self.body_since + self.limits.header_timeout + got / rate)
            if now < due:
                self._want(due)
            else:
                self._body_late()
        if self.head_since is not None and self.limits.header_timeout:
            due = self.head_since + self.limits.header_timeout
            if now < due:
                self._want(due)
            elif self.in_head:
                self.fail(HTTPStatus.REQUEST_TIMEOUT, "request headers took too long")
            elif self.current is None:
                self.transport.close()  # nothing came: nothing to answer
            else:
                self.head_since = None
        elif self.idle_since is not None and self.limits.keepalive_timeout:
            due = self.idle_since + self.limits.keepalive_timeout
            if now < due:
                self._want(due)
            elif self.current is None:
                self.transport.close()

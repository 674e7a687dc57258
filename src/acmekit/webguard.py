"""Guards for aiohttp listeners: against a browser on the host being made to use the HTTP
APIs meant for programs on the same host (`acmekit dns`'s and `acmekit fleet`'s), and
(`GuardedSite`, at the end) against slow and greedy clients of any aiohttp listener.

An API without a token trusts whoever can connect, which on loopback is meant to be the
host's own programs. A web page that the host's browser opens can reach loopback too:

- **Cross-site requests.** A page may POST to `http://127.0.0.1:PORT/...` without asking
  first (a "simple" request: a form, or `fetch` with a `text/plain` body that holds
  JSON); it cannot read the answer, but the change is made (a TXT record published, a
  site added). A browser names the page's origin in `Origin` (and `Sec-Fetch-Site`) on
  every such request: a request that changes something is refused (403) when it comes
  from another origin than the one it is addressed to (Fetch standard, §3.1; RFC 6454).
- **DNS rebinding.** A page's own name, answered first with its server's address and
  then with 127.0.0.1, makes the API the page's own origin: it may then read answers and
  send anything. Its requests carry that name in `Host`, though, and a page addressed
  by an IP address has nothing to rebind: an API without a token answers only a Host
  that is an IP address or `localhost` (421 otherwise, RFC 9110 §15.5.20).

With a token neither is needed (a browser attaches no bearer token by itself) and the
API may be reached under any name. Paths that other hosts' software reaches by name (an
edge forwarding http-01 with the site's Host, acme-dns's `/update` whose credentials are
headers a page cannot send cross-site without asking) are left to their own rules.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from acmekit.hostport import client_of

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PROBLEM = "urn:ietf:params:acme:error:unauthorized"


def _hostname(host: str) -> str:
    try:
        return urlsplit(f"//{host}").hostname or ""
    except ValueError:  # an unbalanced [ or a bad port
        return ""


def loopback_host(host: str) -> bool:
    """True for a host (a Host header, with or without a port) naming loopback."""
    name = _hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def unrebindable_host(host: str) -> bool:
    """True for a Host header that no DNS answer can point elsewhere: an IP address,
    or `localhost` (which browsers resolve to loopback themselves)."""
    name = _hostname(host)
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def cross_origin(request: web.Request) -> bool:
    """True when a browser says the request comes from another origin than its own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site", "none") in ("cross-site", "same-site")
    parts = urlsplit(origin)
    return origin == "null" or parts.netloc.lower() != request.host.lower()


def _refusal(status: int, detail: str) -> web.Response:
    body = json.dumps({"type": _PROBLEM, "detail": detail, "status": status})
    return web.Response(status=status, text=body, content_type="application/problem+json")


def browser_guard(*, check_host: bool, exempt: Callable[[str], bool]) -> Middleware:
    """The middleware: `check_host` (no token) answers only Hosts that are addresses or
    `localhost`; requests that change something are refused cross-origin; paths `exempt`
    says are passed through."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not exempt(request.path):
            if check_host and not unrebindable_host(request.host):
                return _refusal(
                    421, f"this API answers only at an IP address, not {request.host!r}"
                )
            if request.method not in SAFE_METHODS and cross_origin(request):
                return _refusal(403, "a request from another origin (a web page) is refused")
        return await handler(request)

    return guard


# ---------------------------------------------------------------------------------------
# Slow clients: aiohttp's server has no deadline for a request's head and no bound on one
# client's connections, so a client trickling header lines (slowloris) holds a connection
# for as long as it likes, and may open as many as the process has file descriptors.
#
# With TLS, the event loop hands a protocol its transport only once the handshake is
# done: a count taken there misses the connections still in their handshake, which
# asyncio lets last 60 seconds. A guarded TLS site therefore accepts the connections
# itself (`loop.sock_accept`), counts each at once, and has the loop do the handshake on
# the accepted socket (`loop.connect_accepted_socket`) with its own deadline. (Starting
# TLS on an accepted plain transport, `loop.start_tls`, does not do: uvloop starts
# reading a transport after its protocol's `connection_made`, pause or not, so the
# first bytes of the handshake would reach the plain protocol.)

HEAD_TIMEOUT = 30.0  # seconds a request head may take (from the connection's start)
MAX_PER_CLIENT = 64  # connections one client address may hold
HANDSHAKE_TIMEOUT = 10.0  # seconds a TLS handshake may take
ACCEPT_PAUSE = 0.1  # seconds to wait after a failed accept (out of file descriptors)


@dataclass(frozen=True)
class ClientLimits:
    """What one client may hold of a guarded site (see above)."""

    head_timeout: float = HEAD_TIMEOUT
    max_per_client: int = MAX_PER_CLIENT
    handshake_timeout: float = HANDSHAKE_TIMEOUT


class _Held:
    """The connections of each client address, shared by one site's protocols."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count: Counter[str] = Counter()

    def take(self, client: str) -> bool:
        if self.count[client] >= self.limit:
            return False
        self.count[client] += 1
        return True

    def give(self, client: str) -> None:
        self.count[client] -= 1
        if self.count[client] <= 0:
            del self.count[client]


class _Deadline(asyncio.Protocol):
    """aiohttp's protocol, closed when a request head (ended by its blank line) takes
    longer than `head_timeout` from its first byte (from the connection's start, or its
    handshake's end, for the first), and not served at all past its client's share of
    connections. Bytes that follow a head in a later read (a body) count as the start of
    the next head: a kept-alive connection left after such a request is closed at the
    deadline, which a client's pool takes as any server's closing of an idle connection.

    `counted`: the client address, when the connection was counted at its accept."""

    def __init__(
        self, inner: asyncio.Protocol, held: _Held, limits: ClientLimits, counted: str | None
    ) -> None:
        self.inner, self.held, self.limits = inner, held, limits
        self.client = counted
        self.served = False  # connection_made reached the inner protocol
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is no asyncio.Transport subclass: no isinstance)
        transport = cast(asyncio.Transport, base)
        if self.client is None:
            client = client_of(transport.get_extra_info("peername"))
            if not self.held.take(client):
                transport.abort()
                return
            self.client = client
        self.transport = transport
        self.served = True
        self.inner.connection_made(transport)
        self._arm()  # the first head's deadline runs from here

    def _arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(self.limits.head_timeout, self._expire)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        seen = self.tail + data
        if b"\r\n\r\n" in seen:
            self._disarm()  # a head is complete
        elif self.timer is None:
            self._arm()  # a new head (or a late body) starts: its deadline from now
        self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def release(self) -> None:
        """Give the client's place back (once)."""
        self._disarm()
        self.uncount()

    def uncount(self) -> None:
        """Give the client's place back (once), the connection served on."""
        if self.client is not None:
            self.held.give(self.client)
            self.client = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        if self.served:
            self.inner.connection_lost(exc)


class _Accepting(asyncio.AbstractServer):
    """The listening socket of a guarded TLS site and the task that accepts on it, as
    aiohttp's site machinery expects a server (`sockets`, `close`)."""

    def __init__(self, sock: socket.socket, task: asyncio.Task[None]) -> None:
        self.sock, self.task = sock, task

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self.sock.fileno() < 0 else (self.sock,)

    def close(self) -> None:
        self.task.cancel()
        self.sock.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.task.get_loop()

    def is_serving(self) -> bool:
        return not self.task.done()

    async def start_serving(self) -> None:
        """It serves from the start."""

    async def serve_forever(self) -> None:
        await self.task

    async def wait_closed(self) -> None:
        await asyncio.gather(self.task, return_exceptions=True)


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections have a deadline for each request head and a bound
    per client address, and with `ssl_context` a deadline for the TLS handshake, the
    connections in their handshake counted too (see above). `sock`: an already bound
    listening socket, served instead of `host` and `port`. `uncounted`: a TLS peer
    certificate (as `getpeercert()` gives it) whose connections give their place back
    once the handshake has proved it: a trusted client whose load others can cause (the
    CA asking a perspective) is not refused for what they made it hold."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int | None,
        *,
        head_timeout: float = HEAD_TIMEOUT,
        max_per_client: int = MAX_PER_CLIENT,
        limits: ClientLimits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
        uncounted: Callable[[object], bool] | None = None,
    ) -> None:
        if sock is not None:
            host, port = sock.getsockname()[:2]
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.limits = limits or ClientLimits(head_timeout, max_per_client)
        self.held = _Held(self.limits.max_per_client)
        self.handshakes: set[asyncio.Task[None]] = set()
        self.sock = sock
        self.uncounted = uncounted

    @property
    def head_timeout(self) -> float:
        return self.limits.head_timeout

    def _protocol(self, counted: str | None) -> _Deadline:
        server = self._runner.server
        assert server is not None
        return _Deadline(server(), self.held, self.limits, counted)

    async def start(self) -> None:
        self._runner._reg_site(self)
        loop = asyncio.get_running_loop()
        if self._ssl_context is not None:
            sock = self.sock or _listen(self._host, self._port)
            sock.setblocking(False)
            task = loop.create_task(self._accept(sock, self._ssl_context))
            self._server = _Accepting(sock, task)
        elif self.sock is not None:
            self._server = await loop.create_server(lambda: self._protocol(None), sock=self.sock)
        else:
            self._server = await loop.create_server(
                lambda: self._protocol(None),
                self._host,
                self._port,
                reuse_address=self._reuse_address,
            )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    async def _accept(self, sock: socket.socket, tls: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:  # out of file descriptors, or a connection gone
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(ACCEPT_PAUSE)
                continue
            client = client_of(peer)
            if not self.held.take(client):
                conn.close()  # past its share: closed before any handshake
                continue
            task = loop.create_task(self._handshake(conn, client, tls))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _handshake(self, conn: socket.socket, client: str, tls: ssl.SSLContext) -> None:
        """TLS on an accepted connection, cut after the handshake deadline; then served."""
        protocol = self._protocol(client)
        timeout = self.limits.handshake_timeout
        try:
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                lambda: protocol, conn, ssl=tls,
                ssl_handshake_timeout=timeout, ssl_shutdown_timeout=timeout,
            )  # fmt: skip
        # On failure the loop has closed the transport, which owns the socket now.
        except asyncio.CancelledError:  # the site stops
            protocol.release()
            raise
        except Exception as exc:  # a timeout, a failed handshake: this connection ends
            log.debug("TLS handshake from %s failed: %r", client, exc)
            protocol.release()
            return
        if self.uncounted is not None and self.uncounted(transport.get_extra_info("peercert")):
            protocol.uncount()

    async def stop(self) -> None:
        await super().stop()
        for task in list(self.handshakes):  # connections aiohttp has not seen yet
            task.cancel()


def _listen(host: str | None, port: int) -> socket.socket:
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    return socket.create_server((host or "", port), family=family, backlog=128)

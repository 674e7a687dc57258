"""A guard for the HTTP APIs meant for programs on the same host (`acmekit dns`'s and
`acmekit fleet`'s), against a browser on that host being made to use them.

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
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

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

HEAD_TIMEOUT = 30.0  # seconds a request head may take (from the connection's start)
MAX_PER_CLIENT = 64  # connections one client address may hold


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
    longer than `timeout` from its first byte (from the connection's start, for the
    first), and not served at all past its client's share of connections. Bytes that
    follow a head in a later read (a body) count as the start of the next head: a
    kept-alive connection left after such a request is closed at the deadline, which a
    client's pool takes as any server's closing of an idle connection."""

    def __init__(self, inner: asyncio.Protocol, held: _Held, timeout: float) -> None:
        self.inner, self.held, self.timeout = inner, held, timeout
        self.client: str | None = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else ""
        if not self.held.take(client):
            transport.abort()
            return
        self.client = client
        self.inner.connection_made(transport)
        self._arm()  # the first head's deadline runs from the connection's start

    def _arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(self.timeout, self._expire)

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

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.client is not None:
            self.held.give(self.client)
            self.client = None
            self.inner.connection_lost(exc)


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections have a deadline for each request head and a bound
    per client address (see above)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        head_timeout: float = HEAD_TIMEOUT,
        max_per_client: int = MAX_PER_CLIENT,
    ) -> None:
        super().__init__(runner, host, port)
        self.head_timeout = head_timeout
        self.held = _Held(max_per_client)

    async def start(self) -> None:
        self._runner._reg_site(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return _Deadline(server(), self.held, self.head_timeout)

        self._server = await loop.create_server(
            protocol, self._host, self._port, reuse_address=self._reuse_address
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

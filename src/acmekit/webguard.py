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

import ipaddress
import json
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

"""The network under the ACME client: one method, `request`, and two implementations.

`HttpTransport` is the seam (httpx's idea of a one-method transport): the protocol
layer above it never sees aiohttp. `AiohttpTransport` talks to real servers over one
shared aiohttp client and one SSL context (building either per request costs
milliseconds of CPU). `AsgiTransport` calls an ASGI 3 application in-process, so
component tests run client and server on one event loop with no socket at all.

Header names in an `HttpResponse` are lower-cased; `links(rel)` parses RFC 8288 Link
headers, which ACME uses for `rel="alternate"` chains and `rel="up"` (RFC 8555 §7.4.2).

A server is not trusted with the client's memory: `AiohttpTransport` reads at most
`MAX_RESPONSE` bytes of a body (an ACME answer is a few kilobytes: a chain, an order of
at most a few hundred identifiers) and asks for, and accepts, no content coding, so a
small compressed answer cannot inflate to gigabytes.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp

from acmekit.client.errors import ClientError
from acmekit.lifecycle import AsyncClosing

MAX_RESPONSE = 1 << 20  # bytes of one response body


class TransportError(ClientError):
    """The request never got an HTTP answer: connection refused, TLS failure, timeout.
    `roots` is the PEM file the server's certificate was checked against (None: the
    system's), so that an untrusted server can be explained."""

    def __init__(self, message: str, *, roots: str | None = None) -> None:
        super().__init__(message)
        self.roots = roots


class RootsError(ClientError):
    """The PEM file of roots to trust cannot be read or holds no certificate."""


def trust_store(ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying context trusting `ca_bundle` (else the system's roots); a file that
    cannot be used is a `RootsError` naming it, not OpenSSL's bare reason."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            reason = "it holds no PEM certificate"
        else:
            reason = exc.strerror or str(exc)
        raise RootsError(f"cannot use the roots in {ca_bundle}: {reason}") from None


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...]  # (lower-cased name, value), in order received
    body: bytes
    url: str = ""  # the URL that was requested; relative Link targets resolve against it

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        key = name.lower()
        return next((v for k, v in self.headers if k == key), None)

    def header_all(self, name: str) -> tuple[str, ...]:
        key = name.lower()
        return tuple(v for k, v in self.headers if k == key)

    def links(self, rel: str) -> tuple[str, ...]:
        """Targets of every Link header whose rel is `rel` (RFC 8288), in order."""
        found: list[str] = []
        for value in self.header_all("link"):
            for target, params in _LINK.findall(value):
                rels = _REL.search(params)
                if rels and rel in rels.group(1).split():
                    found.append(urljoin(self.url, target))
        return tuple(found)


_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^,;<]+)*)")
_REL = re.compile(r'rel\s*=\s*"?([^";,]+)"?', re.IGNORECASE)


class HttpTransport(Protocol):
    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None
    ) -> HttpResponse: ...


def _flatten(items: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k).lower(), str(v)) for k, v in items)


class AiohttpTransport(AsyncClosing):
    """Real HTTP(S) over one aiohttp client, created on first use.

    `ca_bundle` is a PEM file of roots to trust instead of the system store; where it
    comes from (a flag, REQUESTS_CA_BUNDLE) is the caller's business.
    """

    def __init__(
        self,
        ca_bundle: str | None = None,
        *,
        timeout: float = 30.0,
        connection_limit: int = 100,
        product: str = "acmekit",
    ) -> None:
        self._ssl = trust_store(ca_bundle)
        self._roots = ca_bundle
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = connection_limit
        self._product = product
        self._http: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._limit)
            self._http = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": self._product, "Accept-Encoding": "identity"},
                auto_decompress=False,
            )
        return self._http

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None
    ) -> HttpResponse:
        try:
            async with self._client().request(
                method, url, headers=dict(headers), data=body, allow_redirects=False
            ) as resp:
                data = await _bounded_body(resp, f"{method} {url}")
                return HttpResponse(resp.status, _flatten(resp.headers.items()), data, url)
        except aiohttp.ClientConnectorCertificateError as exc:
            # aiohttp's text repeats the connection key and OpenSSL's tuple; the reason
            # (RFC 5280 path validation's verdict) and the roots used are what matter.
            cause = exc.certificate_error
            reason = getattr(cause, "verify_message", None) or str(cause)
            roots = f"the roots in {self._roots}" if self._roots else "the system's roots"
            message = (
                f"{method} {url}: the server's certificate is not trusted by {roots} "
                f"(certificate verify failed: {reason})"
            )
            raise TransportError(message, roots=self._roots) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"{method} {url}: {exc or type(exc).__name__}"
            raise TransportError(message, roots=self._roots) from exc

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


async def _bounded_body(resp: aiohttp.ClientResponse, what: str) -> bytes:
    """The body, refused once it passes MAX_RESPONSE or if it is content-coded."""
    coding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        raise TransportError(f"{what}: the server sent a {coding!r} body; none was accepted")
    if (resp.content_length or 0) > MAX_RESPONSE:
        raise TransportError(f"{what}: the body is larger than {MAX_RESPONSE} bytes")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > MAX_RESPONSE:
            raise TransportError(f"{what}: the body is larger than {MAX_RESPONSE} bytes")
    return bytes(data)


AsgiMessage = MutableMapping[str, Any]
AsgiApp = Callable[
    [AsgiMessage, Callable[[], Awaitable[AsgiMessage]], Callable[[AsgiMessage], Awaitable[None]]],
    Awaitable[None],
]


class AsgiTransport:
    """Calls an ASGI 3 app in-process: whatever host the URL names, the app answers."""

    def __init__(self, app: AsgiApp, *, server: tuple[str, int] = ("127.0.0.1", 14000)) -> None:
        self._app = app
        self._server = server

    def _scope(self, method: str, url: str, headers: Mapping[str, str]) -> AsgiMessage:
        parts = urlsplit(url)
        raw_path = parts.path or "/"
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "https",
            "path": unquote(raw_path),
            "raw_path": raw_path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            # An HTTP/1.1 client always sends Host; servers build their URLs from it.
            "headers": [(b"host", parts.netloc.encode())]
            + [(k.lower().encode(), v.encode()) for k, v in headers.items() if k.lower() != "host"],
            "server": self._server,
            "client": ("127.0.0.1", 50000),
        }

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None
    ) -> HttpResponse:
        sent = False
        status = 500
        out_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def receive() -> AsgiMessage:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body or b"", "more_body": False}

        async def send(message: AsgiMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out_headers.extend(
                    (bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1"))
                    for k, v in message.get("headers", ())
                )
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await self._app(self._scope(method, url, headers), receive, send)
        payload = b"" if method.upper() == "HEAD" else b"".join(chunks)
        return HttpResponse(status, tuple(out_headers), payload, url)

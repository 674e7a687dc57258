"""http-01 validation (RFC 8555 §8.3), the way Let's Encrypt does it.

The validation authority GETs `http://NAME:PORT/.well-known/acme-challenge/TOKEN` (an IP
identifier's address in place of NAME, RFC 8738 §7; IPv6 in brackets). Names are resolved
through the configured resolver (A, and AAAA only when there is no A address or every A
address refused the connection); each fetch opens its own connection to the address,
sends `Host: NAME` and `Connection: close`, and reads one response with httptools' parser
(the one uvicorn uses). Nothing is shared between fetches: no cookies, no idle
connections. A general-purpose client (aiohttp) cost about 250 µs more CPU per fetch, for
features a validation must not use (docs/decisions.md).

Redirects are followed by hand, at most `max_redirects` times, and only to `http` on port 80
or `https` on port 443 (§8.3 leaves this to policy; this is Let's Encrypt's). The configured
`http01_port` also counts as an http port, and `https_port` as an https one, so that a
deployment or a test on loopback with unprivileged ports can redirect between its own
ports. Certificates of https redirect targets are not verified (Let's Encrypt does not
either: the key authorization is what proves control). A redirect's target, like the
challenge's name, is connected to only at addresses that are not reserved (`reserved.py`):
the check runs on the resolved addresses, before any connection.

The status line and headers may take at most `max_header` bytes (more is a `connection`
problem, found without reading further). The answer must be `200`; at most `max_body`
bytes of its body are read; trailing whitespace is dropped (as Let's Encrypt does) and
the rest must equal the key authorization exactly.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools
from yarl import URL

from acmekit.protocol.challenges import HTTP01_PATH
from acmekit.protocol.messages import Identifier
from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.validation.resolve import (
    DnsClient,
    bound_at,
    first_accepting,
    open_checked,
)

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "acmekit-validation (RFC 8555)"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHOWN = 64  # bytes of an unexpected body quoted back in a problem's detail


@dataclass(frozen=True)
class Http01Policy:
    port: int
    https_port: int
    max_body: int
    max_redirects: int
    max_header: int

    def allowed_ports(self, scheme: str) -> frozenset[int]:
        if scheme == "http":
            return frozenset({80, self.port})
        return frozenset({443, self.https_port})


class Fetched(NamedTuple):
    """One answer: its status, its Location (for redirects) and its bounded body."""

    status: int
    location: str | None = None
    body: bytes = b""
    truncated: bool = False


def https_context() -> ssl.SSLContext:
    """For https redirect targets: any certificate is accepted (see above)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def challenge_url(identifier: Identifier, token: str, port: int) -> URL:
    """§8.3's URL; the default port is left out as Let's Encrypt writes it."""
    return URL.build(scheme="http", host=identifier.value, port=port, path=HTTP01_PATH + token)


class Target:
    """Where one GET goes: what the request needs (`scheme`, `host` as sent, `port`,
    `path` with its query), and its URL for messages and redirects, which for the
    challenge's own URL is built only when asked for (`url`): yarl's URL and the
    properties read from it cost about 3 µs of CPU per challenge."""

    __slots__ = ("_url", "host", "path", "port", "scheme")

    def __init__(self, scheme: str, host: str, port: int, path: str, url: URL | None) -> None:
        self.scheme, self.host, self.port, self.path, self._url = scheme, host, port, path, url

    @classmethod
    def of(cls, url: URL) -> Target:
        return cls(url.scheme, url.raw_host or "", url.port or 80, url.raw_path_qs, url)

    @classmethod
    def challenge(cls, identifier: Identifier, token: str, port: int) -> Target:
        """`challenge_url`'s target; its URL built later when the name and the token
        are plain (lowercase letters, digits, hyphens and dots; base64url), for which
        yarl would keep them as they are."""
        if _PLAIN_HOST.fullmatch(identifier.value) and _PLAIN_TOKEN.fullmatch(token):
            return cls("http", identifier.value, port, HTTP01_PATH + token, None)
        return cls.of(challenge_url(identifier, token, port))

    @property
    def url(self) -> URL:
        if self._url is None:
            self._url = URL.build(
                scheme=self.scheme, host=self.host, port=self.port, path=self.path
            )
        return self._url

    def __str__(self) -> str:
        return str(self.url)


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_-]*")


def redirect_target(current: URL, location: str | None, policy: Http01Policy) -> URL:
    """Where a redirect may lead, or a connection problem saying why it may not."""
    if not location:
        raise problem(ProblemType.CONNECTION, f"fetching {current}: redirect without Location")
    try:
        # A host is ASCII (RFC 3986 §3.2.2). The URL parser would map another through
        # IDNA (UTS #46) into one: 'ª' (the Location's octet 0xAA) to "a", '²' to "2".
        if not urlsplit(location).netloc.isascii():
            raise ValueError("the host is not ASCII")
        target = current.join(URL(location))
    except ValueError:
        raise problem(
            ProblemType.CONNECTION, f"fetching {current}: invalid redirect to {location!r}"
        ) from None
    if target.scheme not in ("http", "https") or not target.host:
        raise problem(
            ProblemType.CONNECTION,
            f"fetching {current}: redirect to {target} is not http or https",
        )
    allowed = policy.allowed_ports(target.scheme)
    if target.port not in allowed:
        ports = " or ".join(str(p) for p in sorted(allowed))
        raise problem(
            ProblemType.CONNECTION,
            f"fetching {current}: redirect to {target} refused: "
            f"{target.scheme} redirects may go only to port {ports}",
        )
    return target


def check_answer(url: URL | Target, answer: Fetched, key_authorization: str) -> None:
    """§8.3: a 200 whose body, less trailing whitespace, is the key authorization."""
    if answer.status != 200:
        raise problem(
            ProblemType.UNAUTHORIZED, f"fetching {url}: invalid response: HTTP {answer.status}"
        )
    if answer.truncated:
        raise problem(
            ProblemType.INCORRECT_RESPONSE,
            f"fetching {url}: response body longer than {len(answer.body) - 1} bytes",
        )
    if answer.body.rstrip(b" \t\r\n") != key_authorization.encode():
        seen = answer.body[:_SHOWN].decode("utf-8", errors="replace")
        more = "..." if len(answer.body) > _SHOWN else ""
        raise problem(
            ProblemType.INCORRECT_RESPONSE,
            f"fetching {url}: the body is not the key authorization for this challenge "
            f"(got {seen!r}{more})",
        )


async def validate_http01(
    dns: DnsClient,
    tls: ssl.SSLContext,
    policy: Http01Policy,
    identifier: Identifier,
    token: str,
    key_authorization: str,
    deadline: float,
) -> None:
    where = Target.challenge(identifier, token, policy.port)
    for _ in range(policy.max_redirects + 1):
        answer = await _fetch_bounded(dns, tls, where, policy, deadline)
        if answer.status not in REDIRECT_STATUSES:
            check_answer(where, answer, key_authorization)
            return
        url = redirect_target(where.url, answer.location, policy)
        log.debug("http-01 for %s redirected to %s", identifier.value, url.host)
        where = Target.of(url)
    raise problem(
        ProblemType.CONNECTION,
        f"fetching {where}: too many redirects (more than {policy.max_redirects})",
    )


async def _fetch_bounded(
    dns: DnsClient, tls: ssl.SSLContext, url: Target, policy: Http01Policy, deadline: float
) -> Fetched:
    """One GET within the deadline, on a connection to the first of `url`'s host's
    addresses that does not refuse it (`first_accepting`; the last refusal when all
    refused); every failure a problem that names the URL."""
    loop = asyncio.get_running_loop()  # once: on Python 3.11 each look-up is a getpid call
    host = url.host
    secure = url.scheme == "https"
    refused: list[ConnectionRefusedError] = []
    # Whether the fetch waits on a lookup of the host's addresses: before the first
    # address is tried, and after every A address refused (AAAA is then asked); not while
    # connecting, sending or reading. The fetch's bound and the lookups' own bound
    # (`addresses_for`) share the deadline, and of two bounds that fire together the outer
    # one, this, raises the TimeoutError: this flag says which of the two timed out.
    looking_up = True

    async def connect(address: str) -> tuple[asyncio.Transport, _Reader] | None:
        nonlocal looking_up
        looking_up = False
        reader = _Reader(policy.max_body, policy.max_header, loop)
        try:
            transport = await open_checked(
                dns.reachable, host, address, url.port, reader,
                tls=tls if secure else None, server_hostname=host if secure else None,
                loop=loop,
            )  # fmt: skip
        except ConnectionRefusedError as exc:
            refused.append(exc)
            looking_up = True  # the next address is tried at once; after the last, AAAA
            return None
        return transport, reader

    try:
        with bound_at(deadline, loop):
            # written out here, not in a coroutine of its own: every coroutine between the
            # task and its waits is passed through again at each wake-up
            opened = await first_accepting(dns, host, deadline, connect, loop=loop)
            if opened is None:
                raise refused[-1] if refused else ConnectionRefusedError()
            transport, reader = opened
            try:
                transport.write(_request(url))
                return await reader.answer
            finally:
                transport.abort()
    except TimeoutError:
        if looking_up:
            # The name could not be resolved in time: a dns problem (RFC 8555 §6.7), as
            # the lookup's own bound would have said had it been the one to fire.
            raise problem(
                ProblemType.DNS, f"fetching {url}: DNS problem: timeout looking up {host}"
            ) from None
        raise problem(ProblemType.CONNECTION, f"fetching {url}: timeout") from None
    except AcmeError as err:
        raise problem(
            ProblemType(err.problem.type), f"fetching {url}: {err.problem.detail}"
        ) from None
    except ssl.SSLError as exc:
        raise problem(ProblemType.TLS, f"fetching {url}: TLS error: {_reason(exc)}") from None
    except OSError as exc:
        raise problem(ProblemType.CONNECTION, f"fetching {url}: {_os_reason(exc)}") from None


def _request(url: Target) -> bytes:
    host = url.host
    shown = f"[{host}]" if ":" in host else host
    if url.port != _DEFAULT_PORTS[url.scheme]:
        shown = f"{shown}:{url.port}"
    return (
        f"GET {url.path} HTTP/1.1\r\nHost: {shown}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


class _Reader(asyncio.Protocol):
    """One response, parsed by httptools as it arrives; `answer` is its outcome.

    The status line and headers may take `max_header` bytes: one more is a problem, and
    the parser is never given more than that before the headers end. Only a 200's body is
    read, up to one byte past `max_body` (which says the body was too long). A body
    without a length ends with the connection. (A protocol rather than asyncio's streams:
    the stream objects cost about a tenth of the fetch's CPU, for nothing used here.)
    """

    def __init__(self, max_body: int, max_header: int, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[Fetched] = loop.create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._max_body = max_body
        self._room = max_header + 1  # header bytes the parser may still be given
        self._max_header = max_header
        self._location: str | None = None
        self._body = bytearray()
        self._headers_done = False
        self._complete = False

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        try:
            self._feed(data)
        except AcmeError as err:
            self._settle(err)
        except httptools.HttpParserError as exc:
            self._settle(problem(ProblemType.CONNECTION, f"malformed HTTP response: {exc}"))
        except Exception as exc:  # reported as the stream reader's errors were
            self._settle(exc)

    def eof_received(self) -> bool | None:
        if not self.answer.done():
            self._ended()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer.done():  # the usual end: the answer was read, the CA closed
            return
        if exc is not None:
            self._settle(exc)
        else:
            self._ended()

    # httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"location":
            self._location = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, chunk: bytes) -> None:
        self._body += chunk[: self._max_body + 1 - len(self._body)]

    def on_message_complete(self) -> None:
        self._complete = True

    # the reading

    def _feed(self, data: bytes) -> None:
        while data:
            if self._headers_done:
                piece, data = data, b""
            else:
                piece, data = data[: self._room], data[self._room :]
                self._room -= len(piece)
            self._parser.feed_data(piece)
            if self._headers_done and (
                self._complete
                or len(self._body) > self._max_body
                or self._parser.get_status_code() != 200  # only a 200's body is read
            ):
                self._settle(self._fetched())
                return
            if not self._headers_done and self._room <= 0:
                raise problem(
                    ProblemType.CONNECTION,
                    f"the status line and headers are longer than {self._max_header} bytes",
                )

    def _ended(self) -> None:
        if not self._headers_done:
            self._settle(problem(ProblemType.CONNECTION, "the server closed the connection"))
        else:
            self._settle(self._fetched())

    def _settle(self, outcome: Fetched | BaseException) -> None:
        if self.answer.done():
            return
        if isinstance(outcome, Fetched):
            self.answer.set_result(outcome)
        else:
            self.answer.set_exception(outcome)

    def _fetched(self) -> Fetched:
        status = self._parser.get_status_code()
        if status in REDIRECT_STATUSES:
            return Fetched(status, self._location)
        if status != 200:
            return Fetched(status)
        body = bytes(self._body)
        return Fetched(200, None, body, len(body) > self._max_body)  # positional: 0.5 µs less


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    return (exc.strerror or _reason(exc)).lower()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]

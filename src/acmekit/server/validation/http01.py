"""http-01 validation (RFC 8555 §8.3), the way Let's Encrypt does it.

The validation authority GETs `http://NAME:PORT/.well-known/acme-challenge/TOKEN` (an IP
identifier's address in place of NAME, RFC 8738 §7; IPv6 in brackets). Names are resolved
through the configured resolver (A, and AAAA only when there is no A address or every A
address refused the connection) by an aiohttp resolver plugged into the one
shared `ClientSession`, which connects to the address while sending `Host: NAME`. The
client keeps no cookies and no idle connections, so one validation never sees another's.

Redirects are followed by hand, at most `max_redirects` times, and only to `http` on port 80
or `https` on port 443 (§8.3 leaves this to policy; this is Let's Encrypt's). The configured
`http01_port` also counts as an http port, and `https_port` as an https one, so that a
deployment or a test on loopback with unprivileged ports can redirect between its own
ports. Certificates of https redirect targets are not verified (Let's Encrypt does not
either: the key authorization is what proves control).

The answer must be `200`; at most `max_body` bytes are read; trailing whitespace is dropped
(as Let's Encrypt does) and the rest must equal the key authorization exactly.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from aiohttp import hdrs
from yarl import URL

from acmekit.protocol.challenges import HTTP01_PATH
from acmekit.protocol.messages import Identifier
from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.validation.resolve import (
    AcmeDnsResolver,
    AddressPlan,
    DnsClient,
    NoIpv6Addresses,
    address_plan,
)

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HEADERS = {
    hdrs.USER_AGENT: "acmekit-validation (RFC 8555)",
    hdrs.ACCEPT: "*/*",
    hdrs.ACCEPT_ENCODING: "identity",
}
_SHOWN = 64  # bytes of an unexpected body quoted back in a problem's detail


@dataclass(frozen=True)
class Http01Policy:
    port: int
    https_port: int
    max_body: int
    max_redirects: int

    def allowed_ports(self, scheme: str) -> frozenset[int]:
        if scheme == "http":
            return frozenset({80, self.port})
        return frozenset({443, self.https_port})


@dataclass(frozen=True)
class Fetched:
    """One answer: its status, its Location (for redirects) and its bounded body."""

    status: int
    location: str | None = None
    body: bytes = b""
    truncated: bool = False


def new_http_client(dns: DnsClient) -> aiohttp.ClientSession:
    """The one HTTP client a Validator shares; must be called inside the running loop."""
    connector = aiohttp.TCPConnector(
        resolver=AcmeDnsResolver(dns), use_dns_cache=False, force_close=True, limit=0, ssl=False
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),
        headers=_HEADERS,
    )


def challenge_url(identifier: Identifier, token: str, port: int) -> URL:
    """§8.3's URL; the default port is left out as Let's Encrypt writes it."""
    return URL.build(scheme="http", host=identifier.value, port=port, path=HTTP01_PATH + token)


def redirect_target(current: URL, location: str | None, policy: Http01Policy) -> URL:
    """Where a redirect may lead, or a connection problem saying why it may not."""
    if not location:
        raise problem(ProblemType.CONNECTION, f"fetching {current}: redirect without Location")
    try:
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


def check_answer(url: URL, answer: Fetched, key_authorization: str) -> None:
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
    client: aiohttp.ClientSession,
    policy: Http01Policy,
    identifier: Identifier,
    token: str,
    key_authorization: str,
    deadline: float,
) -> None:
    url = challenge_url(identifier, token, policy.port)
    for _ in range(policy.max_redirects + 1):
        answer = await _fetch_bounded(client, url, policy.max_body, deadline)
        if answer.status not in REDIRECT_STATUSES:
            check_answer(url, answer, key_authorization)
            return
        url = redirect_target(url, answer.location, policy)
        log.debug("http-01 for %s redirected to %s", identifier.value, url.host)
    raise problem(
        ProblemType.CONNECTION,
        f"fetching {url}: too many redirects (more than {policy.max_redirects})",
    )


async def _fetch_bounded(
    client: aiohttp.ClientSession, url: URL, max_body: int, deadline: float
) -> Fetched:
    plan = AddressPlan()
    saved = address_plan.set(plan)
    try:
        async with asyncio.timeout_at(deadline):
            try:
                return await _fetch(client, url, max_body)
            except aiohttp.ClientConnectorError as exc:
                if not (plan.ipv4_given and _refused(exc)):
                    raise
                plan.ipv6 = True
                try:
                    return await _fetch(client, url, max_body)
                except NoIpv6Addresses:
                    raise exc from None
    except TimeoutError:
        raise problem(ProblemType.CONNECTION, f"fetching {url}: timeout") from None
    except AcmeError as err:
        raise problem(
            ProblemType(err.problem.type), f"fetching {url}: {err.problem.detail}"
        ) from None
    except Exception as exc:  # everything a peer can make aiohttp raise
        raise _client_problem(url, exc) from None
    finally:
        address_plan.reset(saved)


def _refused(exc: aiohttp.ClientConnectorError) -> bool:
    """Whether no address would take a connection (not a DNS or TLS failure)."""
    return not isinstance(exc, aiohttp.ClientConnectorDNSError | aiohttp.ClientSSLError)


async def _fetch(client: aiohttp.ClientSession, url: URL, max_body: int) -> Fetched:
    async with client.get(url, allow_redirects=False) as resp:
        if resp.status in REDIRECT_STATUSES:
            return Fetched(resp.status, location=resp.headers.get("Location"))
        if resp.status != 200:
            return Fetched(resp.status)
        body = b""
        while len(body) <= max_body:
            chunk = await resp.content.read(max_body + 1 - len(body))
            if not chunk:
                break
            body += chunk
        return Fetched(200, body=body, truncated=len(body) > max_body)


def _client_problem(url: URL, exc: Exception) -> AcmeError:
    """Map what aiohttp raised to RFC 8555 §6.7's connection, tls or dns."""
    where = f"fetching {url}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return problem(ProblemType.TLS, f"{where}: TLS error: {_reason(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return problem(ProblemType.DNS, f"{where}: DNS problem: {_reason(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return problem(ProblemType.CONNECTION, f"{where}: {_os_reason(exc.os_error)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return problem(ProblemType.CONNECTION, f"{where}: the server closed the connection")
    if isinstance(exc, aiohttp.ClientResponseError):
        return problem(ProblemType.CONNECTION, f"{where}: malformed HTTP response: {exc.message}")
    if isinstance(exc, OSError):
        return problem(ProblemType.CONNECTION, f"{where}: {_os_reason(exc)}")
    if isinstance(exc, aiohttp.ClientError | ValueError):
        return problem(ProblemType.CONNECTION, f"{where}: {_reason(exc)}")
    log.warning("http-01 fetch failed unexpectedly: %s", type(exc).__name__)
    return problem(ProblemType.CONNECTION, f"{where}: {_reason(exc)}")


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    return (exc.strerror or _reason(exc)).lower()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]

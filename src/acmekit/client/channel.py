"""The ACME protocol layer over a transport: directory, nonces, signed requests, errors.

This is the plumbing under `Client` (certbot keeps the network apart from the protocol
steps in the same way):

- The directory (RFC 8555 §7.1.1) is fetched once, on first need.
- Nonces (§7.2) come from a pool fed by the Replay-Nonce of every response, newest
  first; only when the pool is empty does a HEAD to newNonce fetch one. Many orders in flight on one
  event loop share the pool; no lock is needed since taking a nonce never awaits.
- Every request is a JWS POST (§6.2) signed with `kid` or an embedded `jwk`; reads are
  POST-as-GET (§6.3). A `badNonce` answer (§6.5) is retried with the fresh nonce that
  came with it, a few times, since a server may reject any nonce (Pebble rejects 5% on
  purpose).
- A 503 that carries Retry-After (RFC 9110 §15.6.4, §10.2.3) says the server is
  briefly unable, not that it refused: the request is sent again after that long, through
  the injected clock, a few times, if the wait is short (at most a minute); a POST is
  signed anew with a fresh nonce. Any other error, 429 `rateLimited` included, is the
  caller's to handle: its wait is hours, and the CA's verdict.
- An error status is a problem document (§6.7): raised as AcmeError carrying the
  Problem, with the response's Retry-After (§6.6) attached for the caller to honour.
  An answer that breaks the protocol (an error without a problem document, no nonce,
  no Location, not JSON) is ServerProtocolError: our finding, not the CA's verdict.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import deque
from typing import Any

from acmekit.client.errors import ServerProtocolError
from acmekit.client.resources import Directory
from acmekit.client.retry import parse_retry_after
from acmekit.client.transport import HttpResponse, HttpTransport
from acmekit.clock import Clock
from acmekit.protocol.jose import PrivateKey, sign
from acmekit.protocol.problems import AcmeError, Problem, ProblemType

log = logging.getLogger(__name__)

JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"
# A badNonce costs one round trip and its answer carries a fresh nonce (§6.5), so retries
# are cheap, while a request that gives up fails the whole order. With a server that refuses
# a fraction p of good nonces, a request fails with probability p^(retries+1): at p = 0.3
# (Pebble's chaos in our tests) five retries lost about one issuance in a hundred; ten lose
# one in tens of thousands. A server that refuses every nonce still fails after eleven tries.
BAD_NONCE_RETRIES = 10
UNAVAILABLE_RETRIES = 3  # 503 with Retry-After: sent again this many times at most
UNAVAILABLE_MAX_WAIT = 60.0  # seconds; a longer Retry-After is left to the caller
NONCE_POOL_LIMIT = 256


class AcmeChannel:
    """Directory, nonce pool and signed POSTs against one ACME server."""

    def __init__(
        self,
        directory_url: str,
        transport: HttpTransport,
        clock: Clock,
        *,
        bad_nonce_retries: int = BAD_NONCE_RETRIES,
        unavailable_retries: int = UNAVAILABLE_RETRIES,
        unavailable_max_wait: float = UNAVAILABLE_MAX_WAIT,
    ) -> None:
        self.directory_url = directory_url
        self.bad_nonce_retries = bad_nonce_retries
        self.unavailable_retries = unavailable_retries
        self.unavailable_max_wait = unavailable_max_wait
        self.transport = transport
        self.clock = clock
        self._directory: Directory | None = None
        self._nonces: deque[str] = deque(maxlen=NONCE_POOL_LIMIT)

    async def directory(self) -> Directory:
        if self._directory is None:
            resp = await self._send("GET", self.directory_url, {}, None)
            self._check(resp)
            self._directory = Directory.from_json(_json_object(resp))
        return self._directory

    async def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> HttpResponse:
        """An unsigned request, sent again while the server answers 503 with a short
        Retry-After (see `_unavailable_wait`)."""
        for attempt in range(self.unavailable_retries + 1):
            resp = await self._once(method, url, headers, body)
            wait = self._unavailable_wait(resp, attempt)
            if wait is None:
                return resp
            await self.clock.sleep(wait)
        raise AssertionError("unreachable")

    async def _once(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> HttpResponse:
        resp = await self.transport.request(method, url, headers=headers, body=body)
        nonce = resp.header("replay-nonce")
        if nonce:
            self._nonces.append(nonce)
        return resp

    def _unavailable_wait(self, resp: HttpResponse, attempt: int) -> float | None:
        """Seconds to wait before sending again after `attempt` earlier retries, or None:
        only a 503 with a Retry-After of at most `unavailable_max_wait` is retried."""
        if resp.status != 503 or attempt >= self.unavailable_retries:
            return None
        after = self.retry_after(resp)
        if after is None or after > self.unavailable_max_wait:
            return None
        log.info("%s answered 503, sending again in %.0f s", resp.url, after)
        return after

    async def _nonce(self) -> str:
        directory = await self.directory()  # its answer may carry a nonce too
        if not self._nonces:
            resp = await self._send("HEAD", directory.new_nonce, {}, None)
            if resp.status >= 400:
                self._check(resp)
            if not self._nonces:
                raise ServerProtocolError("server sent no Replay-Nonce from newNonce")
        return self._nonces.pop()  # the newest first: the least likely to be stale

    async def post(
        self,
        url: str,
        payload: Any,
        *,
        key: PrivateKey,
        kid: str | None,
        accept: str | None = None,
    ) -> HttpResponse:
        """A signed POST (payload None means POST-as-GET); errors raise AcmeError."""
        headers = {"Content-Type": JOSE_JSON}
        if accept:
            headers["Accept"] = accept
        bad_nonces = unavailable = 0
        while True:
            # Signed anew each time: a nonce is single use (§6.5), and a 503 may have used it.
            jws = sign(key, payload, url=url, nonce=await self._nonce(), kid=kid)
            resp = await self._once("POST", url, headers, json.dumps(jws).encode())
            if resp.status < 400:
                return resp
            wait = self._unavailable_wait(resp, unavailable)
            if wait is not None:
                unavailable += 1
                await self.clock.sleep(wait)
                continue
            err = self._problem(resp)
            if err.type != ProblemType.BAD_NONCE or bad_nonces == self.bad_nonce_retries:
                raise AcmeError(err)
            bad_nonces += 1
            log.debug("badNonce from %s, retrying (attempt %d)", url, bad_nonces)

    async def get(self, url: str) -> HttpResponse:
        """A plain GET (renewal information, §4.2 of RFC 9773); errors raise AcmeError."""
        resp = await self._send("GET", url, {}, None)
        self._check(resp)
        return resp

    async def post_as_get(
        self, url: str, *, key: PrivateKey, kid: str, accept: str | None = None
    ) -> HttpResponse:
        return await self.post(url, None, key=key, kid=kid, accept=accept)

    def retry_after(self, resp: HttpResponse) -> float | None:
        return parse_retry_after(resp.header("retry-after"), self.clock.now())

    def _check(self, resp: HttpResponse) -> None:
        if resp.status >= 400:
            raise AcmeError(self._problem(resp))

    def _problem(self, resp: HttpResponse) -> Problem:
        """The response's problem document; ServerProtocolError when it sent none."""
        try:
            doc = json.loads(resp.body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # a hostile server's brackets
            doc = None
        after = self.retry_after(resp)
        retry = int(after) if after is not None else None
        if isinstance(doc, dict) and "type" in doc:
            found = Problem.from_json(doc, default_status=resp.status)
            return dataclasses.replace(found, retry_after=retry)
        text = resp.body[:200].decode("utf-8", "replace")
        raise ServerProtocolError(
            f"HTTP {resp.status} without a problem document from {resp.url}: {text}",
            status=resp.status,
            retry_after=after,
        )


def _json_object(resp: HttpResponse) -> dict[str, Any]:
    try:
        doc = json.loads(resp.body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep brackets
        raise ServerProtocolError(f"server sent invalid JSON from {resp.url}") from None
    if not isinstance(doc, dict):
        raise ServerProtocolError(f"server sent a JSON {type(doc).__name__}, not an object")
    return doc


def json_object(resp: HttpResponse) -> dict[str, Any]:
    """The body of a successful response as a JSON object (ServerProtocolError otherwise)."""
    return _json_object(resp)


def location(resp: HttpResponse) -> str:
    url = resp.header("location")
    if not url:
        raise ServerProtocolError(f"server sent no Location from {resp.url}")
    return url

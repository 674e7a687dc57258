"""The protocol channel over an in-process ASGI app: nonces, badNonce retry, problems."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import AcmeChannel, AsgiTransport, Client, HttpResponse, SystemClock
from acmekit.client.channel import json_object, location
from acmekit.client.errors import ClientError, NoAccount, ServerProtocolError
from acmekit.protocol.jose import parse_jws
from acmekit.protocol.problems import AcmeError, ProblemType

BASE = "https://ca.test"
Send = Callable[[dict[str, Any]], Awaitable[None]]


class TinyCa:
    """Just enough of an ACME server to exercise the channel's plumbing."""

    def __init__(self, reject_first: int = 0, nonce_on_directory: bool = True) -> None:
        self.reject_first = reject_first
        self.nonce_on_directory = nonce_on_directory
        self.counter = 0
        self.nonce_heads = 0
        self.nonces_seen: list[str] = []
        self.issued: list[str] = []

    def _nonce(self) -> str:
        self.counter += 1
        nonce = f"nonce-{self.counter}"
        self.issued.append(nonce)
        return nonce

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        status, headers, payload = self._route(scope["method"], scope["path"], body)
        if scope["path"] != "/dir" or self.nonce_on_directory:
            headers = [*headers, ("replay-nonce", self._nonce())]
        raw = [(k.encode(), v.encode()) for k, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, list[Any], bytes]:
        if path == "/dir":
            doc = {k: f"{BASE}/{v}" for k, v in _DIRECTORY.items()}
            doc["meta"] = {"externalAccountRequired": True, "profiles": {"short": "6 days"}}
            return 200, [("content-type", "application/json")], json.dumps(doc).encode()
        if method == "HEAD":
            self.nonce_heads += 1
            return 200, [], b""
        self.nonces_seen.append(str(parse_jws(body).protected["nonce"]))
        if len(self.nonces_seen) <= self.reject_first:
            return _problem(400, {"type": str(ProblemType.BAD_NONCE), "detail": "stale"})
        if path == "/limited":
            prob = {
                "type": str(ProblemType.RATE_LIMITED),
                "detail": "too many",
                "subproblems": [
                    {"type": str(ProblemType.RATE_LIMITED), "identifier": _ident("a.test")}
                ],
            }
            status, headers, payload = _problem(429, prob)
            return status, [*headers, ("retry-after", "30")], payload
        if path == "/html":
            return 502, [("content-type", "text/html")], b"<h1>Bad Gateway</h1>"
        return 201, [("location", f"{BASE}/acct/1")], b'{"status": "valid"}'


_DIRECTORY = {
    "newNonce": "nonce",
    "newAccount": "acct",
    "newOrder": "order",
    "revokeCert": "revoke",
    "keyChange": "key-change",
}


def _ident(value: str) -> dict[str, str]:
    return {"type": "dns", "value": value}


def _problem(status: int, doc: dict[str, Any]) -> tuple[int, list[Any], bytes]:
    return status, [("content-type", "application/problem+json")], json.dumps(doc).encode()


def _channel(ca: TinyCa) -> AcmeChannel:
    return AcmeChannel(f"{BASE}/dir", AsgiTransport(ca), SystemClock(), bad_nonce_retries=3)


KEY = ec.generate_private_key(ec.SECP256R1())


async def test_directory_is_parsed_once() -> None:
    channel = _channel(TinyCa())
    first = await channel.directory()
    assert first.new_account == f"{BASE}/acct"
    assert first.external_account_required
    assert first.profiles == {"short": "6 days"}
    assert await channel.directory() is first


async def test_nonces_come_from_responses_and_head_only_when_empty() -> None:
    ca = TinyCa()
    channel = _channel(ca)
    await channel.post(f"{BASE}/acct", {}, key=KEY, kid=None)
    await channel.post(f"{BASE}/acct", {}, key=KEY, kid=None)
    # The directory GET left a nonce; each POST answer left the next one.
    assert ca.nonce_heads == 0
    assert ca.nonces_seen == ["nonce-1", "nonce-2"]


async def test_an_empty_pool_is_filled_from_new_nonce() -> None:
    ca = TinyCa(nonce_on_directory=False)
    channel = _channel(ca)
    await channel.post(f"{BASE}/acct", {}, key=KEY, kid=None)
    await channel.post(f"{BASE}/acct", {}, key=KEY, kid=None)
    assert ca.nonce_heads == 1
    assert ca.nonces_seen == ["nonce-1", "nonce-2"]


async def test_bad_nonce_is_retried_with_the_nonce_from_the_error() -> None:
    ca = TinyCa(reject_first=2)
    channel = _channel(ca)
    resp = await channel.post(f"{BASE}/acct", {"x": 1}, key=KEY, kid=None)
    assert resp.status == 201
    assert resp.header("Location") == f"{BASE}/acct/1"
    assert ca.nonces_seen == ["nonce-1", "nonce-2", "nonce-3"]


async def test_bad_nonce_gives_up_after_the_retries() -> None:
    channel = _channel(TinyCa(reject_first=10))
    with pytest.raises(AcmeError) as err:
        await channel.post(f"{BASE}/acct", {}, key=KEY, kid=None)
    assert err.value.problem.type == ProblemType.BAD_NONCE


async def test_the_default_budget_outlasts_ten_bad_nonces_in_a_row_and_not_eleven() -> None:
    # At Pebble's 30% chaos, five retries lost about one issuance in a hundred (§6.5).
    def default(ca: TinyCa) -> AcmeChannel:
        return AcmeChannel(f"{BASE}/dir", AsgiTransport(ca), SystemClock())

    resp = await default(TinyCa(reject_first=10)).post(f"{BASE}/acct", {}, key=KEY, kid=None)
    assert resp.status == 201
    with pytest.raises(AcmeError) as err:
        await default(TinyCa(reject_first=11)).post(f"{BASE}/acct", {}, key=KEY, kid=None)
    assert err.value.problem.type == ProblemType.BAD_NONCE


async def test_problem_document_with_subproblems_and_retry_after() -> None:
    channel = _channel(TinyCa())
    with pytest.raises(AcmeError) as err:
        await channel.post(f"{BASE}/limited", None, key=KEY, kid="k")
    prob = err.value.problem
    assert prob.type == ProblemType.RATE_LIMITED
    assert prob.status == 429  # absent from the document: taken from the response
    assert prob.retry_after == 30
    assert prob.subproblems[0].identifier == _ident("a.test")
    assert "a.test: rateLimited" in prob.describe()


async def test_error_without_problem_document_is_ours_not_the_cas() -> None:
    channel = _channel(TinyCa())
    with pytest.raises(ServerProtocolError, match="Bad Gateway") as err:
        await channel.post(f"{BASE}/html", None, key=KEY, kid="k")
    assert err.value.status == 502


def test_answers_that_break_the_protocol_are_server_protocol_errors() -> None:
    url = f"{BASE}/order"
    with pytest.raises(ServerProtocolError, match="no Location"):
        location(HttpResponse(201, (), b"{}", url))
    with pytest.raises(ServerProtocolError, match="invalid JSON"):
        json_object(HttpResponse(200, (), b"<html>", url))


async def test_a_request_before_registering_fails_here_not_at_the_ca() -> None:
    ca = TinyCa()
    async with Client(f"{BASE}/dir", KEY, transport=AsgiTransport(ca)) as client:
        with pytest.raises(NoAccount) as err:
            await client.new_order(["a.test"])
    assert isinstance(err.value, ClientError) and not isinstance(err.value, AcmeError)
    assert ca.nonces_seen == []  # nothing was sent


def test_link_headers_are_parsed_by_rel() -> None:
    resp = HttpResponse(
        200,
        (
            ("link", '<https://ca.test/dir>;rel="index"'),
            ("link", '<https://ca.test/cert/1/1>; rel="alternate", </cert/1/2>;rel=alternate'),
            ("link", '<https://ca.test/issuer>;title="x";rel="up"'),
        ),
        b"",
        "https://ca.test/cert/1",
    )
    assert resp.links("alternate") == ("https://ca.test/cert/1/1", "https://ca.test/cert/1/2")
    assert resp.links("up") == ("https://ca.test/issuer",)
    assert resp.links("next") == ()
    assert resp.header("LINK") == '<https://ca.test/dir>;rel="index"'

"""newOrder's identifiers before the signature (PostgreSQL): they are parsed ahead only
to make the reads sent with the nonce and the account, which cover ten names at most
(`REUSABLE_AHEAD_MOST`), so a longer list is not parsed before the signature (some
40,000 instructions a name, 100 names by default, that a request with a forged signature
or a used nonce would make the CA spend). A list that was parsed ahead is not parsed
again by the handler. Whatever the list holds past the bound (an invalid name, another
type, duplicates of names before it, wildcards and addresses, too many names), the
answers are the handler's own: the same status, headers and problem document as with
nothing read ahead."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from acmekit.protocol.messages import Identifier
from acmekit.server import authority as authority_module
from acmekit.server.authority import REUSABLE_AHEAD_MOST
from acmekit.server.config import Limit, RateLimits, ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme, new_key
from acmekit_testkit.databases import fresh_postgres_database

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
LIMITS = RateLimits(certificates_per_domain=Limit(1, timedelta(days=7)))


@pytest.fixture
async def pg_ca(config_on: Callable[[str], ServerConfig]) -> AsyncIterator[Assembly]:
    """The CA on PostgreSQL (reads ahead), its clock still at T0: a Retry-After is the
    same however long apart two requests are."""
    with fresh_postgres_database("acmekit_parse_ahead") as url:
        assembly = assemble(replace(config_on(url), rate_limits=LIMITS), now=lambda: T0)
        yield assembly
        await assembly.app.close()
        assembly.store.engine.dispose()


def _dns(value: str) -> dict[str, str]:
    return {"type": "dns", "value": value}


def _names(tag: str, n: int) -> list[dict[str, str]]:
    return [_dns(f"{tag}{i}.example.test") for i in range(n)]


@pytest.mark.postgres
@pytest.mark.parametrize("n", [1, REUSABLE_AHEAD_MOST, REUSABLE_AHEAD_MOST + 1, 100])
async def test_names_are_parsed_once_and_not_ahead_past_what_is_read_ahead(
    pg_ca: Assembly, responder: Http01Responder, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    acme = RawAcme(pg_ca.app)
    flow = Flow(acme, responder)
    assert (await flow.account()).status == 201
    parsed: list[int] = []  # the length of each list parsed
    real = authority_module.parse_identifiers

    def counted(docs: object, limit: int = 100) -> tuple[Identifier, ...]:
        parsed.append(len(docs) if isinstance(docs, list) else -1)
        return real(docs, limit)

    monkeypatch.setattr(authority_module, "parse_identifiers", counted)
    url = f"{acme.base}/acme/new-order"
    payload = {"identifiers": _names("p", n)}
    got = await acme.post(url, payload, new_key(), flow.kid)  # another key signed it
    assert (got.status, got.json()["detail"]) == (400, "JWS signature is invalid")
    assert parsed == ([n] if n <= REUSABLE_AHEAD_MOST else [])
    parsed.clear()
    resp = await acme.post(url, payload, flow.key, flow.kid)
    assert resp.status == 201, resp.body
    assert parsed == [n]  # ahead (and taken by the handler), or by the handler alone
    assert resp.json()["identifiers"] == sorted(payload["identifiers"], key=lambda d: d["value"])


def _at(names: list[dict[str, Any]], i: int, doc: Any) -> list[Any]:
    return [*names[:i], doc, *names[i + 1 :]]


_CUT = REUSABLE_AHEAD_MOST
_MIXED = [
    *_names("l", _CUT - 4),
    _dns("*.w.example.test"),
    _dns("w.example.test"),
    {"type": "ip", "value": "127.0.0.2"},  # loopback: the tests' CA allows it
    {"type": "ip", "value": "::1"},
    {"type": "ip", "value": "0:0::1"},  # the one before, spelt otherwise
    _dns("*.W.example.test"),
]
# Each a newOrder's payload, most with more names than are read ahead, and the answer
# it gets: the order made, or a problem's type.
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "invalid-name-at-50": (
        {"identifiers": _at(_names("a", 100), 49, _dns("bad..example.test"))},
        "rejectedIdentifier",
    ),
    "wildcard-not-leftmost-at-50": (
        {"identifiers": _at(_names("b", 100), 49, _dns("a.*.example.test"))},
        "rejectedIdentifier",
    ),
    "unsupported-type-at-50": (
        {"identifiers": _at(_names("c", 100), 49, {"type": "email", "value": "x@y.test"})},
        "unsupportedIdentifier",
    ),
    "not-an-object-at-50": (
        {"identifiers": _at(_names("d", 100), 49, "d49.example.test")},
        "malformed",
    ),
    "bad-address-at-50": (
        {"identifiers": _at(_names("f", 100), 49, {"type": "ip", "value": "192.0.2"})},
        "malformed",
    ),
    "invalid-name-at-11": (
        {"identifiers": _at(_names("g", _CUT + 1), _CUT, _dns("-g.example.test"))},
        "rejectedIdentifier",
    ),
    "invalid-name-at-10": (
        {"identifiers": _at(_names("h", _CUT), _CUT - 1, _dns("h.example.123"))},
        "rejectedIdentifier",
    ),
    "too-many": ({"identifiers": _names("i", 101)}, "rejectedIdentifier"),
    "too-many-all-one": ({"identifiers": [_dns("j.example.test")] * 101}, "rejectedIdentifier"),
    "duplicates-across-the-cut": (
        {"identifiers": [*_names("k", _CUT), _dns("K0.Example.Test")]},
        "made",
    ),
    "addresses-across-the-cut-refused-by-the-profile": (
        {"identifiers": _MIXED},
        "rejectedIdentifier",
    ),
    "wildcards-and-addresses-across-the-cut": (
        {"identifiers": _MIXED, "profile": "shortlived"},
        "made",
    ),
    "rate-limited-across-the-cut": (
        {"identifiers": [*_names("m", _CUT - 1), _dns("x.limit.test")] * 2},
        "rateLimited",
    ),
    "a-hundred": ({"identifiers": _names("n", 100)}, "made"),
    "ten": ({"identifiers": _names("o", _CUT)}, "made"),
}


async def _answer(flow: Flow, payload: dict[str, Any], forged: bool) -> tuple[Any, ...]:
    """What matters of newOrder's answer: a problem's status, Retry-After and document
    (bytes); an order's status, identifiers and count of authorizations."""
    acme = flow.acme
    key = new_key() if forged else flow.key
    resp = await acme.post(f"{acme.base}/acme/new-order", payload, key, flow.kid)
    if resp.status == 201:
        doc = resp.json()
        return 201, doc["status"], doc["identifiers"], len(doc["authorizations"])
    return resp.status, resp.header("retry-after"), resp.header("content-type"), resp.body


@pytest.mark.postgres
async def test_the_answers_are_the_handlers_own_whatever_lies_past_the_bound(
    pg_ca: Assembly, responder: Http01Responder, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = Flow(RawAcme(pg_ca.app), responder)
    await flow.issue("one.limit.test")  # the domain's one certificate this week
    answers = {}
    for case, (payload, _) in CASES.items():
        for forged in (True, False):
            got = await _answer(flow, payload, forged)
            with monkeypatch.context() as nothing_ahead:  # as on SQLite: no reads ahead
                nothing_ahead.setattr(pg_ca.app, "_ahead", False)
                reference = await _answer(flow, payload, forged)
            assert got == reference, case
            if forged:
                assert json.loads(got[3])["detail"] == "JWS signature is invalid"
            else:
                kind = "made" if got[0] == 201 else json.loads(got[3])["type"]
                answers[case] = kind.removeprefix("urn:ietf:params:acme:error:")
    assert answers == {case: answer for case, (_, answer) in CASES.items()}

"""A newOrder's payload before its signature (PostgreSQL): it is parsed ahead only to
read ten names at most (`REUSABLE_AHEAD_MOST`), so a payload larger than ten names'
could be, or with more brackets than `jsontext.MAX_DEPTH` (which has its parsed value
walked), is not parsed before the signature: a forged request of 44 KB of empty
arrays made the CA parse and walk 11,000 of them (100 million instructions) for
nothing. The account's own such order is answered as with nothing read
ahead, and a real order of ten names of the longest length is still read ahead."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from acmekit.protocol import jsontext
from acmekit.server import authority as authority_module
from acmekit.server.authority import REUSABLE_AHEAD_MOST
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme, new_key
from acmekit_testkit.databases import fresh_postgres_database


@pytest.fixture
async def pg_ca(config_on: Callable[[str], ServerConfig]) -> AsyncIterator[Assembly]:
    with fresh_postgres_database("acmekit_ahead_bound") as url:
        assembly = assemble(config_on(url))
        yield assembly
        await assembly.app.close()
        assembly.store.engine.dispose()


def _longest(i: int) -> dict[str, str]:
    """A dns identifier of 253 octets, labels of 63 at most."""
    head = f"n{i}-" + "a" * 60  # 63
    return {"type": "dns", "value": ".".join([head, "b" * 63, "c" * 63, "d" * 56, "test"])}


# Each a payload, and what the account's own gets for it: the order made (a field it
# does not know is ignored), or a problem's type.
FORGED: dict[str, tuple[Any, str]] = {
    "empty-arrays": ({"identifiers": [[]] * 11_000}, "malformed"),
    "not-a-list": ({"identifiers": {f"k{i}": [0] for i in range(2_400)}}, "malformed"),
    "numbers": (
        {"identifiers": [{"type": "dns", "value": "x.example.test"}], "n": [0] * 15_000},
        "made",
    ),
}


@pytest.mark.postgres
@pytest.mark.parametrize("case", sorted(FORGED))
async def test_a_large_payload_is_not_parsed_before_the_signature(
    pg_ca: Assembly, responder: Http01Responder, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    acme = RawAcme(pg_ca.app)
    flow = Flow(acme, responder)
    assert (await flow.account()).status == 201
    parsed: list[int] = []  # each payload's length parsed
    real = jsontext.loads

    def counted(text: bytes | str, what: str = "request body") -> Any:
        if what == "payload":
            parsed.append(len(text))
        return real(text, what)

    monkeypatch.setattr(jsontext, "loads", counted)
    url = f"{acme.base}/acme/new-order"
    payload, kind = FORGED[case]
    got = await acme.post(url, payload, new_key(), flow.kid)  # another key signed it
    assert (got.status, got.json()["detail"]) == (400, "JWS signature is invalid")
    assert parsed == []
    # the account's own: the handler's answer, as with nothing read ahead
    resp = await acme.post(url, payload, flow.key, flow.kid)
    if kind == "made":
        assert resp.status == 201, resp.body
    else:
        assert (resp.status, resp.json()["type"]) == (400, f"urn:ietf:params:acme:error:{kind}")


@pytest.mark.postgres
async def test_ten_of_the_longest_names_are_still_read_ahead(
    pg_ca: Assembly, responder: Http01Responder, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = RawAcme(pg_ca.app)
    flow = Flow(acme, responder)
    assert (await flow.account()).status == 201
    lists: list[int] = []
    real = authority_module.parse_identifiers

    def counted(docs: object, limit: int = 100) -> Any:
        lists.append(len(docs) if isinstance(docs, list) else -1)
        return real(docs, limit)

    monkeypatch.setattr(authority_module, "parse_identifiers", counted)
    payload = {
        "identifiers": [_longest(i) for i in range(REUSABLE_AHEAD_MOST)],
        "profile": "classic",
        "replaces": "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
    }
    url = f"{acme.base}/acme/new-order"
    got = await acme.post(url, payload, new_key(), flow.kid)
    assert (got.status, got.json()["detail"]) == (400, "JWS signature is invalid")
    assert lists == [REUSABLE_AHEAD_MOST]  # parsed ahead, for its reads

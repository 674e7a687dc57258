"""What a newOrder whose signature does not verify makes the CA read. Its names are
taken from the payload before the signature is verified, to read their reusable
authorizations in the round trip of the nonce and the account (PostgreSQL): anyone with
a nonce and any account's URL can send such a request, so the reads it makes are bounded
by a few, not by `max_identifiers` (100 by default, a hundred reads per request where a
forged request made one statement). A list of more names than the bound is not read
ahead (nor parsed: docs/decisions.md), but where the handler reads them, after the
signature, the account and the rate limits (in one statement)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from acmekit.server.authority import REUSABLE_AHEAD_MOST
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme, new_key
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.sqlcount import SqlCount, counting

_READS_AUTHZ = "SELECT CAST(json_build_array(a.id,"  # the counted texts' start
_READS_REST = "SELECT v.n - 1, (SELECT CAST(COALESCE(json_agg(s.t"  # many names' at once
_PENDING = "SELECT COUNT(*), MIN(a.expires) FROM authorizations"


@pytest.fixture
async def counted_ca(
    config_on: Callable[[str], ServerConfig],
) -> AsyncIterator[tuple[Assembly, SqlCount]]:
    with fresh_postgres_database("acmekit_forged") as url, counting() as count:
        assembly = assemble(config_on(url))
        yield assembly, count
        await assembly.app.close()
        assembly.store.engine.dispose()


def _names(n: int) -> dict[str, Any]:
    return {"identifiers": [{"type": "dns", "value": f"n{i}.example.test"} for i in range(n)]}


def _reusable_reads(count: SqlCount, mark: int) -> int:
    return sum(t.startswith(_READS_AUTHZ) for t in count.texts[mark:])


@pytest.mark.postgres
@pytest.mark.parametrize("n", [REUSABLE_AHEAD_MOST, REUSABLE_AHEAD_MOST + 1, 100])
async def test_a_forged_new_order_reads_no_more_than_a_few_names(
    counted_ca: tuple[Assembly, SqlCount], responder: Http01Responder, n: int
) -> None:
    assembly, count = counted_ca
    acme = RawAcme(assembly.app)
    flow = Flow(acme, responder)
    assert (await flow.account()).status == 201
    assert n <= assembly.app.config.max_identifiers
    url = f"{acme.base}/acme/new-order"
    mark, trips = len(count.texts), len(count.trips)
    got = await acme.post(url, _names(n), new_key(), flow.kid)  # another key signed it
    assert (got.status, got.json()["detail"]) == (400, "JWS signature is invalid")
    # Up to REUSABLE_AHEAD_MOST names, each one's candidates and (rate limits on) the
    # issuance buckets; past it, none: only so many are read ahead, so a longer list is
    # not parsed before the signature. Never the account's pending count (below).
    # Nothing else was sent.
    within = n <= REUSABLE_AHEAD_MOST
    assert _reusable_reads(count, mark) == (n if within else 0)
    (sent,) = count.trips[trips:]
    assert len(sent) == (1 + n + 1 if within else 1)
    # The account's own order of as many names reads their candidates ahead up to the
    # bound, else all of them once, together, after its checks.
    mark = len(count.texts)
    resp = await acme.post(url, _names(n), flow.key, flow.kid)
    assert resp.status == 201, resp.body
    assert _reusable_reads(count, mark) == (n if within else 0)
    assert sum(t.startswith(_READS_REST) for t in count.texts[mark:]) == (0 if within else 1)
    again = await acme.post(url, _names(n), flow.key, flow.kid)  # each one reused
    assert again.json()["authorizations"] == resp.json()["authorizations"]


@pytest.mark.postgres
async def test_a_forged_new_order_does_not_count_the_accounts_authorizations(
    counted_ca: tuple[Assembly, SqlCount], responder: Http01Responder
) -> None:
    """The pending authorizations' count reads every authorization the account ever had
    (none is deleted, and a valid one stays stored pending): some 75 ms for an account of
    100,000 on PostgreSQL. Made before the signature, anyone with a free nonce and an
    account's URL (CAA accounturi publishes it) could have the CA make it per request.
    It rides with the account's own new-order take, after the signature: the order's
    round trips are as many."""
    assembly, count = counted_ca
    acme = RawAcme(assembly.app)
    flow = Flow(acme, responder)
    assert (await flow.account()).status == 201
    url = f"{acme.base}/acme/new-order"
    trips = len(count.trips)
    got = await acme.post(url, _names(2), new_key(), flow.kid)  # another key signed it
    assert (got.status, got.json()["detail"]) == (400, "JWS signature is invalid")
    (sent,) = count.trips[trips:]
    assert not [t for t in sent if t.startswith(_PENDING)]
    assert len(sent) == 1 + 2 + 1  # the nonce's, two names' candidates, the buckets
    trips = len(count.trips)
    resp = await acme.post(url, _names(2), flow.key, flow.kid)
    assert resp.status == 201, resp.body
    first, take, insert = count.trips[trips:]
    assert not [t for t in first if t.startswith(_PENDING)]
    assert len(take) == 2 and take[0].startswith(_PENDING)  # with the new-order take
    assert take[1].startswith("INSERT INTO rate_buckets")
    assert not [t for t in insert if t.startswith(_PENDING)]
    # The same names again, each authorization reused: nothing pending is added, so the
    # count is not asked, and the take goes alone.
    trips = len(count.trips)
    again = await acme.post(url, _names(2), flow.key, flow.kid)
    assert again.json()["authorizations"] == resp.json()["authorizations"]
    sent = [t for trip in count.trips[trips:] for t in trip]
    assert not [t for t in sent if t.startswith(_PENDING)]
    assert [t for t in sent if t.startswith("INSERT INTO rate_buckets")]  # the take made

"""newOrder of many names: the reusable authorizations of the names not read ahead (a
list of more than ten, PostgreSQL; every list on SQLite) are read in one statement after
the request's checks, not one a name, and the order reuses for each of them what it
reuses for a name read ahead (a list of ten, PostgreSQL) set up alike: the profile's,
its `authz_reuse` period, the wildcard, pending or valid, five candidates at most, newest
first. Counted at the driver (acmekit_testkit.sqlcount), with the default configuration
(rate limits on), on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from acmekit.database import to_us
from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
)
from acmekit.server.authority import REUSABLE_AHEAD_MOST
from acmekit.server.config import ServerConfig
from acmekit.server.records import AuthorizationRecord, ChallengeRecord
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.sqlcount import SqlCount, counting

PROFILE = "tlsserver"  # validations reused for 7 hours
CASES = 6
# The texts' starts: each name's read of its candidates, and the read of many names'.
_READ_ONE = ("SELECT json_array(a.id,", "SELECT CAST(json_build_array(a.id,")
_READ_MANY = ("SELECT v.key, (SELECT json_group_array(s.t)", "SELECT v.n - 1, (SELECT CAST(")


def _name(tag: str, i: int) -> str:
    return f"{tag}{i}.example.test"


def _store(
    assembly: Assembly, account_id: str, authz_id: str, name: str, expires: datetime, *,
    profile: str = PROFILE, wildcard: bool = False, validated: datetime | None = None,
) -> None:  # fmt: skip
    status = ChallengeStatus.PENDING if validated is None else ChallengeStatus.VALID
    ch = ChallengeRecord(f"{authz_id}-c", authz_id, ChallengeType.DNS_01, "t" * 43, status)
    ident = Identifier(IdentifierType.DNS, name)
    authz = AuthorizationRecord(
        authz_id, account_id, ident, wildcard, AuthorizationStatus.PENDING, expires, (ch,)
    )
    assembly.store.orders.add_authorization(authz, profile=profile)
    if validated is not None:  # as a validation records it
        with assembly.store.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE challenges SET validated = :at WHERE id = :id"),
                {"at": to_us(validated), "id": ch.id},
            )


def _setup(assembly: Assembly, account_id: str, tag: str, n: int) -> list[tuple[str, str | None]]:
    """n names, name i set up as case i % CASES; each one's identifier as ordered and
    the authorization the order should reuse for it (None: a new one)."""
    now = datetime.now(UTC)
    week = now + timedelta(days=7)
    wanted: list[tuple[str, str | None]] = []
    for i in range(n):
        name, case, z = _name(tag, i), i % CASES, f"{tag}-{i}"
        if case == 0:  # pending, of the order's profile
            _store(assembly, account_id, z, name, week)
            wanted.append((name, z))
        elif case == 1:  # valid, validated within the profile's reuse period
            _store(assembly, account_id, z, name, week, validated=now - timedelta(hours=1))
            wanted.append((name, z))
        elif case == 2:  # valid, validated before it
            _store(assembly, account_id, z, name, week, validated=now - timedelta(hours=8))
            wanted.append((name, None))
        elif case == 3:  # another profile's
            _store(assembly, account_id, z, name, week, profile="classic")
            wanted.append((name, None))
        elif case == 4:  # the profile's is the sixth newest: past the five read
            _store(assembly, account_id, z, name, week)
            for k in range(5):
                later = week + timedelta(hours=k + 1)
                _store(assembly, account_id, f"{z}-{k}", name, later, profile="classic")
            wanted.append((name, None))
        else:  # a wildcard: its own, not the name's (newer)
            _store(assembly, account_id, f"{z}-plain", name, week + timedelta(days=1))
            _store(assembly, account_id, z, name, week, wildcard=True)
            wanted.append((f"*.{name}", z))
    return wanted


async def _order(
    flow: Flow, count: SqlCount, wanted: list[tuple[str, str | None]]
) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    """The order's document and the round trips (PostgreSQL) of its request."""
    acme = flow.acme
    payload = {"identifiers": [{"type": "dns", "value": v} for v, _ in wanted], "profile": PROFILE}
    nonce = await acme.nonce()
    mark = len(count.trips)
    texts = len(count.texts)
    resp = await acme.post(f"{acme.base}/acme/new-order", payload, flow.key, flow.kid, nonce=nonce)
    assert resp.status == 201, resp.body
    return {"doc": resp.json(), "texts": count.texts[texts:]}, count.trips[mark:]


def _reused(doc: dict[str, Any], wanted: list[tuple[str, str | None]]) -> list[str | None]:
    """Each name's authorization (in `wanted`'s order) if it is one set up beforehand,
    else None. The order lists its authorizations in its identifiers' order."""
    ids = [url.rsplit("/", 1)[1] for url in doc["authorizations"]]
    by_name = dict(zip([i["value"] for i in doc["identifiers"]], ids, strict=True))
    stored = {z for _, z in wanted if z is not None}
    return [by_name[v] if by_name[v] in stored else None for v, _ in wanted]


@pytest.fixture
async def counted(ca_config: ServerConfig) -> AsyncIterator[tuple[Assembly, SqlCount]]:
    with counting() as count:  # before the store: it sees the connections made from here
        assembly = assemble(ca_config)
        yield assembly, count
        await assembly.app.close()
        assembly.store.engine.dispose()


async def test_names_past_the_tenth_are_reused_as_within_it_in_one_read(
    counted: tuple[Assembly, SqlCount], responder: Http01Responder
) -> None:
    ca, count = counted
    flow = Flow(RawAcme(ca.app), responder)
    assert (await flow.account()).status == 201
    account_id = flow.kid.rsplit("/", 1)[1]
    trips: dict[int, int] = {}
    for n in (10, 25, 100):
        wanted = _setup(ca, account_id, f"n{n}-", n)
        got, sent = await _order(flow, count, wanted)
        assert _reused(got["doc"], wanted) == [z for _, z in wanted]
        texts = got["texts"]
        ones = sum(t.startswith(_READ_ONE) for t in texts)
        many = sum(t.startswith(_READ_MANY) for t in texts)
        if ca.store.remote:  # up to ten with the account's read, more all in one
            assert ones == (n if n <= REUSABLE_AHEAD_MOST else 0)
            assert [t for trip in sent[1:] for t in trip if t.startswith(_READ_ONE)] == []
            assert many == (n > REUSABLE_AHEAD_MOST)
            trips[n] = len(sent)
        else:  # every name's in one statement
            assert (ones, many) == (0, 1)
    if ca.store.remote:  # past ten names, the joint read, and the issuance buckets' read
        # (rate limits on), which is read ahead for ten names at most, as the candidates
        assert trips[100] == trips[25] == trips[10] + 2

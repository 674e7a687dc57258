"""The store's reads as one JSON text a row, and the records made from them.

- Every value survives the database's JSON: NULL, microsecond times, booleans (0/1 on
  SQLite, true/false on PostgreSQL), text with quotes, backslashes and non-ASCII, and an
  authorization's challenges nested (none: an empty array).
- What the repositories read back is the record they wrote, field for field, and stays
  right as the rows change (the decoded-record caches are keyed by the text read).
- `positional` makes the same frozen record as the class; `loads` reads what json.loads
  reads and refuses what it refuses.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
)
from acmekit.server.records import (
    AccountRecord,
    AuthorizationRecord,
    ChallengeRecord,
    OrderRecord,
    positional,
)
from acmekit.server.repos.base import RowJson, loads
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_store
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ODD = 'quo"te \\ back \u2013 ünï'


@pytest.fixture(params=BACKEND_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(request.param, tmp_path, "rowjson.db") as store:
        yield store


def test_values_survive_the_databases_json(store: Store) -> None:
    j = RowJson(store.engine.dialect.name)
    nested = j.rows(["c.id", "c.type"], "FROM challenges c WHERE c.authz_id = a.id")
    text = j.text(["a.id", "a.expires", "a.wildcard", "a.profile", "a.mpic_quorum", nested])
    account = AccountRecord("acct", "t" * 43, {"kty": "EC"}, (), AccountStatus.VALID, NOW)
    store.accounts.add_account(account)
    authz = AuthorizationRecord(
        "az", "acct", Identifier(IdentifierType.DNS, "x.example"), True,
        AuthorizationStatus.PENDING, NOW, (),
    )  # fmt: skip
    store.orders.add_authorization(authz, profile=ODD)
    with store.db.raw() as c:
        (found,) = c.one(f"SELECT {text} FROM authorizations a WHERE a.id = ?", ("az",))
    head = loads(found)
    chs = head[5] if isinstance(head[5], list) else loads(head[5])
    assert head[:5] == ["az", 1767323045678901, head[2], ODD, None]
    assert head[2] in (1, True) and chs == []


def _written(store: Store) -> tuple[OrderRecord, AuthorizationRecord]:
    name = Identifier(IdentifierType.DNS, "rows.example")
    chs = tuple(
        ChallengeRecord(f"az{t}", "az", t, f"tok-{t}", ChallengeStatus.PENDING)
        for t in (ChallengeType.TLS_ALPN_01, ChallengeType.HTTP_01, ChallengeType.DNS_01)
    )
    authz = AuthorizationRecord(
        "az", "acct", name, False, AuthorizationStatus.PENDING, NOW + timedelta(days=7), chs
    )
    order = OrderRecord("ord", "acct", (name,), ("az",), NOW + timedelta(days=1), NOW, profile=ODD)
    store.orders.add_order(order, [authz])
    # As read: the challenges in the order of their types, the profile the order's.
    read = dataclasses.replace(
        authz, challenges=tuple(sorted(chs, key=lambda ch: ch.type)), profile=ODD
    )
    return order, read


def test_records_read_are_the_records_written(store: Store) -> None:
    order, authz = _written(store)
    assert store.orders.authorization("az") == authz
    assert store.orders.order("ord") == order
    assert store.orders.order_with_authorizations("ord") == (order, [authz])
    http = authz.challenges[1]
    assert store.orders.challenge_and_authorization(http.id) == (http, authz)
    assert store.orders.reusable_authorizations("acct", authz.identifier, False, NOW) == [authz]
    assert store.orders.authorization("no-such-authz") is None
    assert store.orders.challenge_and_authorization("no-such-challenge") is None

    # A change made by anyone is a new text, so a new record: never the cached one.
    assert store.orders.start_challenge(http.id, NOW, "https://ca.example/acct/1")
    store.orders.finish_challenge(http.id, NOW, {"type": ODD}, None)
    now = store.orders.authorization("az")
    assert now is not None
    failed = next(ch for ch in now.challenges if ch.id == http.id)
    assert failed.status is ChallengeStatus.INVALID and failed.error == {"type": ODD}
    assert failed.started == NOW and failed.account_uri == "https://ca.example/acct/1"
    assert store.orders.claim_finalize("ord", b"\x00\xffcsr", NOW)
    claimed = store.orders.order_with_authorizations("ord")
    assert claimed is not None
    assert claimed[0] == dataclasses.replace(order, csr=b"\x00\xffcsr", finalize_started=NOW)
    assert claimed[1] == [now]


def test_positional_makes_the_same_frozen_record() -> None:
    make = positional(ChallengeRecord)
    values = ("c", "a", ChallengeType.HTTP_01, "t", ChallengeStatus.VALID, NOW, None, NOW, "u")
    made, built = make(*values), ChallengeRecord(*values)
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert dataclasses.replace(made, token="x") == dataclasses.replace(built, token="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.token = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        make(*values[:-1])  # every field, defaults included


def test_loads_reads_as_json_loads() -> None:
    for text in ('[1, "a", null, {"b": [1.5, true]}]', " [1] ", '"x"', "17"):
        assert loads(text) == json.loads(text)
    for bad in ("[1] x", "", "[1,", "nope"):
        with pytest.raises(json.JSONDecodeError):
            loads(bad)


def test_a_polled_order_comes_with_its_authorizations_until_decided(store: Store) -> None:
    """`polled_order`: as `order_with_authorizations` while the order's status is its
    authorizations'; without them once it has a finalize claim, an error or a
    certificate (each in a fresh order)."""
    order, authz = _written(store)
    assert store.orders.polled_order("ord") == (order, [authz])
    assert store.orders.polled_order("no-such-order") is None
    assert store.orders.claim_finalize("ord", b"csr", NOW)
    claimed = store.orders.order("ord")
    assert store.orders.polled_order("ord") == (claimed, [])
    assert store.orders.order_with_authorizations("ord") == (claimed, [authz])

    failed = dataclasses.replace(order, id="ord-failed", authz_ids=("az",))
    store.orders.add_order(failed, [])
    assert store.orders.fail_order("ord-failed", {"type": ODD})
    assert store.orders.polled_order("ord-failed") == (
        dataclasses.replace(failed, error={"type": ODD}),
        [],
    )
    issued = dataclasses.replace(order, id="ord-issued")
    store.orders.add_order(issued, [])
    with store.db.raw() as c:
        c.run("UPDATE orders SET certificate_id = ? WHERE id = ?", ("cert", "ord-issued"))
    assert store.orders.polled_order("ord-issued") == (
        dataclasses.replace(issued, certificate_id="cert"),
        [],
    )

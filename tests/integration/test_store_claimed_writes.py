"""A replacement's writes made while its claim is held (RFC 9773 §5) store what the
same writes store unclaimed, on PostgreSQL.

On PostgreSQL the claimed order's INSERTs are `INSERT ... SELECT` from a VALUES list
whose values are cast to their columns' types. A cast to VARCHAR(n) cuts a longer text
short without a word where the INSERT of that text into the column is refused: the
claimed order then stored a value other than the one it was given (an identifier cut
to another name) where the unclaimed order was refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from psycopg import errors

from acmekit.protocol.messages import (
    ChallengeType,
)
from acmekit.server.records import (
    AuthorizationRecord,
    OrderRecord,
)
from acmekit.server.store import Store
from acmekit_testkit.pendingorders import (
    authorization_record,
    reserved_certificate,
    stored_account,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
# Longer than the identifier's column (255): the column's bound is the last guard.
LONG = ".".join(["a" * 60] * 5) + ".example.test"


def _order(order_id: str, authz: AuthorizationRecord, replaces: str | None) -> OrderRecord:
    return OrderRecord(
        order_id,
        "acct",
        (authz.identifier,),
        (authz.id,),
        NOW + timedelta(days=1),
        NOW,
        replaces=replaces,
    )


def _rows(store: Store) -> tuple[int, int, int]:
    with store.db.once() as c:
        row = c.one(
            "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM authorizations), "
            "(SELECT COUNT(*) FROM challenges)"
        )
    return int(row[0]), int(row[1]), int(row[2])


@pytest.mark.postgres
def test_a_value_too_long_for_its_column_is_refused_claimed_or_not(pg_store: Store) -> None:
    store = pg_store
    stored_account(store, NOW)
    reserved_certificate(store, "cert", NOW, name="x.example.test")
    plain = authorization_record("plain", LONG, NOW, challenge=ChallengeType.DNS_01)
    with pytest.raises(errors.StringDataRightTruncation):
        store.orders.add_order(_order("o-plain", plain, None), [plain])
    claimed = authorization_record("claimed", LONG, NOW, challenge=ChallengeType.DNS_01)
    with pytest.raises(errors.StringDataRightTruncation):
        store.orders.add_order(
            _order("o-claimed", claimed, "cert"), [claimed], None, ("cert", None)
        )
    assert _rows(store) == (0, 0, 0)
    assert store.certificates.replacement("cert") is None


@pytest.mark.postgres
def test_a_claimed_order_reads_back_as_written(pg_store: Store) -> None:
    store = pg_store
    stored_account(store, NOW)
    reserved_certificate(store, "cert", NOW, name="x.example.test")
    authz = authorization_record(
        "wild", "x.example.test", NOW, wildcard=True, challenge=ChallengeType.DNS_01
    )
    order = _order("o-wild", authz, "cert")
    assert store.orders.add_order(order, [authz], None, ("cert", None))
    assert store.orders.order("o-wild") == order
    got = store.orders.authorization("wild")
    assert got is not None
    assert got.identifier == authz.identifier
    assert got.wildcard is True
    assert got.challenges == authz.challenges
    assert got.expires == authz.expires
    assert store.certificates.replacement("cert") == "o-wild"

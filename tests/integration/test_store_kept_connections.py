"""The store's driver path: one kept connection per thread, and what must not change with it.

On PostgreSQL the kept connection sits in autocommit, with transactions sent as BEGIN and
COMMIT on its cursor: a block nested in another still gets a transaction of its own (a
pooled connection), a failed transaction leaves nothing behind, a renewed pool replaces
the kept connections, and threads do not share one. On both databases an order is read
with its authorizations in one statement, in the order the order lists them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
)
from acmekit.server.records import AuthorizationRecord, ChallengeRecord, OrderRecord
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_store
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=BACKEND_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(request.param, tmp_path, "kept.db") as store:
        yield store


def _backend_pid(store: Store) -> int:
    with store.db.once() as c:
        return int(c.one("SELECT pg_backend_pid()")[0])


def _setting(store: Store, name: str) -> str | None:
    with store.db.once() as c:
        row = c.one("SELECT value FROM settings WHERE name = ?", (name,))
    return None if row is None else str(row[0])


@pytest.mark.postgres
def test_a_thread_keeps_its_connection_until_the_pool_is_renewed(pg_store: Store) -> None:
    first = _backend_pid(pg_store)
    assert _backend_pid(pg_store) == first
    pg_store.engine.dispose()  # what a disconnect does (and closing the store)
    assert _backend_pid(pg_store) != first


@pytest.mark.postgres
def test_threads_do_not_share_a_kept_connection(pg_store: Store) -> None:
    mine = _backend_pid(pg_store)
    theirs: list[int] = []
    worker = threading.Thread(target=lambda: theirs.append(_backend_pid(pg_store)))
    worker.start()
    worker.join()
    assert theirs and theirs[0] != mine


@pytest.mark.postgres
def test_a_nested_block_is_a_transaction_of_its_own(pg_store: Store) -> None:
    with pg_store.db.raw() as outer:
        outer.run("INSERT INTO settings (name, value) VALUES (?, ?)", ("a", "outer"))
        with pg_store.db.once() as inner:  # another connection: the insert is not visible
            assert inner.one("SELECT value FROM settings WHERE name = ?", ("a",)) is None
            assert int(inner.one("SELECT pg_backend_pid()")[0]) != int(
                outer.one("SELECT pg_backend_pid()")[0]
            )
    assert _setting(pg_store, "a") == "outer"


@pytest.mark.postgres
def test_a_failed_transaction_leaves_nothing_and_the_connection_usable(pg_store: Store) -> None:
    with pytest.raises(RuntimeError), pg_store.db.raw() as c:
        c.run("INSERT INTO settings (name, value) VALUES (?, ?)", ("b", "lost"))
        raise RuntimeError("the caller refuses")
    assert _setting(pg_store, "b") is None
    with pytest.raises(pg_store.db.integrity), pg_store.db.raw() as c:
        c.run("INSERT INTO settings (name, value) VALUES (?, ?)", ("c", "1"))
        c.run("INSERT INTO settings (name, value) VALUES (?, ?)", ("c", "2"))
    assert _setting(pg_store, "c") is None
    with pg_store.db.once() as c:  # autocommit again: not left inside a transaction
        c.run("INSERT INTO settings (name, value) VALUES (?, ?)", ("d", "kept"))
    assert _setting(pg_store, "d") == "kept"


def _authz(authz_id: str, name: str) -> AuthorizationRecord:
    challenges = tuple(
        ChallengeRecord(
            f"{authz_id}-{t.value}",
            authz_id,
            t,
            f"tok-{authz_id}-{t.value}",
            ChallengeStatus.PENDING,
        )
        for t in (ChallengeType.HTTP_01, ChallengeType.DNS_01)
    )
    return AuthorizationRecord(
        id=authz_id,
        account_id="acct",
        identifier=Identifier(IdentifierType.DNS, name),
        wildcard=False,
        stored_status=AuthorizationStatus.PENDING,
        expires=NOW + timedelta(days=7),
        challenges=challenges,
    )


def test_an_order_is_read_with_its_authorizations_in_its_order(store: Store) -> None:
    authzs = [_authz("z-first", "b.example"), _authz("a-second", "a.example")]
    order = OrderRecord(
        id="order-1",
        account_id="acct",
        identifiers=tuple(a.identifier for a in authzs),
        authz_ids=tuple(a.id for a in authzs),
        expires=NOW + timedelta(days=1),
        created=NOW,
    )
    store.orders.add_order(order, authzs)
    store.orders.finish_challenge("z-first-http-01", NOW, None)  # not started: unchanged
    assert store.orders.start_challenge("z-first-http-01", NOW, "https://ca/acct")
    store.orders.finish_challenge("z-first-http-01", NOW, None, NOW + timedelta(days=30))

    found = store.orders.order_with_authorizations("order-1")
    assert found is not None
    read, records = found
    assert read == order
    assert [a.id for a in records] == ["z-first", "a-second"]
    assert records == store.orders.authorizations(order.authz_ids)
    first = records[0]
    assert first.expires == NOW + timedelta(days=30)
    assert {c.type: c.status for c in first.challenges} == {
        ChallengeType.HTTP_01: ChallengeStatus.VALID,
        ChallengeType.DNS_01: ChallengeStatus.PENDING,
    }
    assert store.orders.order_with_authorizations("no-such-order") is None


def test_an_order_whose_authorization_is_gone_reads_without_it(store: Store) -> None:
    authz = _authz("only", "c.example")
    order = OrderRecord(
        id="order-2",
        account_id="acct",
        identifiers=(authz.identifier, Identifier(IdentifierType.DNS, "d.example")),
        authz_ids=("only", "never-stored"),
        expires=NOW + timedelta(days=1),
        created=NOW,
    )
    store.orders.add_order(order, [authz])
    found = store.orders.order_with_authorizations("order-2")
    assert found is not None
    assert found[0] == order
    assert [a.id for a in found[1]] == ["only"]


def test_an_order_naming_an_authorization_twice_reads_it_as_the_two_reads_did(
    store: Store,
) -> None:
    authz = _authz("twice", "e.example")
    order = OrderRecord(
        id="order-3",
        account_id="acct",
        identifiers=(authz.identifier,),
        authz_ids=("twice", "twice"),
        expires=NOW + timedelta(days=1),
        created=NOW,
    )
    store.orders.add_order(order, [authz])
    found = store.orders.order_with_authorizations("order-3")
    assert found is not None
    assert found[1] == store.orders.authorizations(order.authz_ids)
    assert [len(a.challenges) for a in found[1]] == [2, 2]

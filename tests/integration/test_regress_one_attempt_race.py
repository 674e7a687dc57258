"""One challenge decides an authorization (RFC 8555 §7.1.6): starting one is a
conditional UPDATE that finds every other challenge of its authorization pending. Two
CA processes on one PostgreSQL database (two stores here, each its own connection)
answering two challenges of one authorization at the same moment each ran that UPDATE
on a snapshot without the other's change (READ COMMITTED), on rows of their own, so no
lock stood between them: both started, and an invalid authorization could still turn
valid. On SQLite, whose writers take turns, it held."""

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
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
AUTHZS = 150  # each answered twice at once: one race each
KINDS = (ChallengeType.HTTP_01, ChallengeType.DNS_01)


@pytest.fixture(params=BACKEND_PARAMS)
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    with fresh_database(request.param, tmp_path, "race.db") as url:
        one, two = Store.from_url(url), Store.from_url(url)
        yield one, two
        one.engine.dispose()
        two.engine.dispose()


def _authz(n: int) -> AuthorizationRecord:
    authz_id = f"authz-{n}"
    challenges = tuple(
        ChallengeRecord(
            f"{authz_id}-{t.value}", authz_id, t, f"tok{n}{t.value}", ChallengeStatus.PENDING
        )
        for t in KINDS
    )
    return AuthorizationRecord(
        id=authz_id,
        account_id="acct",
        identifier=Identifier(IdentifierType.DNS, f"n{n}.race.test"),
        wildcard=False,
        stored_status=AuthorizationStatus.PENDING,
        expires=NOW + timedelta(days=7),
        challenges=challenges,
    )


def _race(store: Store, kind: ChallengeType, barrier: threading.Barrier, won: list[str]) -> None:
    for n in range(AUTHZS):
        barrier.wait()
        if store.orders.start_challenge(f"authz-{n}-{kind.value}", NOW, "https://ca/acct/1"):
            won.append(f"authz-{n}")


def test_two_processes_never_start_two_challenges_of_one_authorization(
    two_stores: tuple[Store, Store],
) -> None:
    one, two = two_stores
    authzs = [_authz(n) for n in range(AUTHZS)]
    order = OrderRecord(
        id="order-race",
        account_id="acct",
        identifiers=tuple(a.identifier for a in authzs),
        authz_ids=tuple(a.id for a in authzs),
        expires=NOW + timedelta(days=1),
        created=NOW,
    )
    one.orders.add_order(order, authzs)
    barrier = threading.Barrier(2)
    won: list[list[str]] = [[], []]
    threads = [
        threading.Thread(target=_race, args=(store, kind, barrier, wins))
        for store, kind, wins in zip((one, two), KINDS, won, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    both = set(won[0]) & set(won[1])
    assert not both, f"{len(both)} of {AUTHZS} authorizations had two challenges started"
    assert len(won[0]) + len(won[1]) == AUTHZS  # and each had one

"""The reusable candidates of many names in one statement
(`OrderRepository.reusable_authorizations_of`) are, name by name, what each name's own
read gives (`reusable_authorizations`): the same authorizations, newest first (ties in
expiry by id), five at most, of this account only, stored pending, of the identifier's
type and wildcard, live past the horizon. On both databases."""

from __future__ import annotations

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
from acmekit.server.records import AuthorizationRecord, ChallengeRecord
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.pendingorders import stored_account
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
HORIZON = NOW + timedelta(days=1)


@pytest.fixture(params=BACKEND_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_database(request.param, tmp_path, "ca.db") as url:
        found = Store.from_url(url)
        yield found
        found.engine.dispose()


def _add(
    store: Store, authz_id: str, ident: Identifier, *, account: str = "acct",
    wildcard: bool = False, expires: datetime = NOW + timedelta(days=7),
    status: AuthorizationStatus = AuthorizationStatus.PENDING, validated: bool = False,
    profile: str | None = None,
) -> None:  # fmt: skip
    ch = ChallengeRecord(
        f"{authz_id}-h",
        authz_id,
        ChallengeType.HTTP_01,
        f"tok-{authz_id}",
        ChallengeStatus.VALID if validated else ChallengeStatus.PENDING,
        NOW - timedelta(hours=1) if validated else None,
    )
    store.orders.add_authorization(
        AuthorizationRecord(authz_id, account, ident, wildcard, status, expires, (ch,)),
        profile=profile,
    )


def _dns(i: int) -> Identifier:
    return Identifier(IdentifierType.DNS, f"n{i}.example.test")


def test_the_candidates_of_many_names_are_each_names_own(store: Store) -> None:
    stored_account(store, NOW)
    names: list[tuple[Identifier, bool]] = []
    for i in range(25):
        ident, case = _dns(i), i % 6
        names.append((ident, case == 4))
        if case == 0:  # one live candidate
            _add(store, f"a{i}", ident)
        elif case == 1:  # seven: the five newest, ties in expiry ordered by id
            for k in range(7):
                _add(store, f"b{i}-{6 - k}", ident, expires=NOW + timedelta(days=2 + k // 3))
        elif case == 2:  # none of this account, of this status, or live past the horizon
            _add(store, f"c{i}-other", ident, account="someone-else")
            _add(store, f"c{i}-gone", ident, status=AuthorizationStatus.DEACTIVATED)
            _add(store, f"c{i}-soon", ident, expires=HORIZON - timedelta(seconds=1))
            _add(store, f"c{i}-edge", ident, expires=HORIZON)
        elif case == 3:  # the name's wildcard only: not the name's
            _add(store, f"d{i}-wild", ident, wildcard=True)
        elif case == 4:  # asked as a wildcard: the wildcard's, not the name's
            _add(store, f"e{i}-wild", ident, wildcard=True, validated=True, profile="p")
            _add(store, f"e{i}-plain", ident)
        # case 5: nothing stored
    ip = Identifier(IdentifierType.IP, "192.0.2.7")
    _add(store, "ip", ip)
    _add(store, "ip-as-dns", Identifier(IdentifierType.DNS, "192.0.2.7"))
    names.append((ip, False))
    names.append((_dns(0), False))  # a name twice: read twice, the same

    orders = store.orders
    together = orders.reusable_authorizations_of("acct", names, HORIZON)
    each = [orders.reusable_authorizations("acct", i, w, HORIZON) for i, w in names]
    assert together == each
    ids = [[a.id for a in found] for found in together]
    assert ids[0] == ["a0"]
    assert ids[1] == ["b1-0", "b1-1", "b1-2", "b1-3", "b1-4"]  # (expiry desc, id)
    assert ids[2] == ids[3] == ids[5] == []
    assert ids[4] == ["e4-wild"]
    assert ids[25] == ["ip"]
    assert ids[26] == ids[0]
    for few in ([], names[:1], names[:2], names[:3]):  # fewer read one statement each
        assert orders.reusable_authorizations_of("acct", few, HORIZON) == each[: len(few)]

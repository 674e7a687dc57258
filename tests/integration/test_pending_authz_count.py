"""The account's pending-authorizations count (the pending-authorizations rate limit, the
operator's `accounts show` and account deactivation) on SQLite and PostgreSQL: after each
way the CA changes a challenge or an authorization, it equals what RFC 8555 §7.1.6
derives, and what the statement before migration 0010 (which probed the challenges of
every authorization of the account) answered; the statement and the operator's list are
planned on ix_authz_pending, the account's undecided authorizations only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acmekit.database import from_us, to_us
from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
    authorization_status,
)
from acmekit.server import admin, records
from acmekit.server.repos import inspect as inspect_repo
from acmekit.server.repos import orders as orders_repo
from acmekit.server.schema import UNDECIDED, authorizations
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNT = "acct-pending"
# The count as the CA read it before migration 0010: the specification the new one meets.
OLD_COUNT = (
    "SELECT COUNT(*), MIN(a.expires) FROM authorizations a WHERE a.account_id = ? "
    "AND a.stored_status = 'pending' AND a.expires > ? AND NOT EXISTS (SELECT 1 "
    "FROM challenges c WHERE c.authz_id = a.id AND c.status IN ('valid', 'invalid'))"
)
TYPES = (ChallengeType.HTTP_01, ChallengeType.DNS_01)
TYPES_PENDING = (ChallengeStatus.PENDING,) * 2


@pytest.fixture(params=BACKEND_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_database(str(request.param), tmp_path, "ca.db") as url:
        s = Store.from_url(url)
        try:
            s.accounts.add_account(
                records.AccountRecord(
                    ACCOUNT, "t" * 43, {"kty": "EC"}, (), AccountStatus.VALID, NOW
                )
            )
            yield s
        finally:
            s.engine.dispose()


def _authz(
    n: int,
    expires: datetime = NOW + timedelta(days=7),
    statuses: tuple[ChallengeStatus, ...] = (ChallengeStatus.PENDING,) * 2,
) -> records.AuthorizationRecord:
    authz_id = f"z{n:03d}"
    chs = tuple(
        records.ChallengeRecord(
            f"{authz_id}-{i}",
            authz_id,
            kind,
            f"tok-{n}-{i}",
            status,
            NOW if status == ChallengeStatus.VALID else None,
        )
        for i, (kind, status) in enumerate(zip(TYPES, statuses, strict=True))
    )
    name = Identifier(IdentifierType.DNS, f"n{n}.example.test")
    return records.AuthorizationRecord(
        authz_id, ACCOUNT, name, False, AuthorizationStatus.PENDING, expires, chs
    )


def _sql(store: Store, text: str, params: tuple[Any, ...]) -> list[Any]:
    with store.db.raw() as c:
        return list(c.all(text, params))


def _derived(store: Store, at: datetime) -> tuple[int, datetime | None]:
    """The count and first expiry from the records, as §7.1.6 derives each status."""
    ids = [
        r[0] for r in _sql(store, "SELECT id FROM authorizations WHERE account_id = ?", (ACCOUNT,))
    ]
    pending = [
        a.expires
        for a in store.orders.authorizations(ids)
        if authorization_status(a.stored_status, (c.status for c in a.challenges), a.expires, at)
        == AuthorizationStatus.PENDING
    ]
    return len(pending), min(pending, default=None)


def _old(store: Store, at: datetime) -> tuple[int, datetime | None]:
    count, first = _sql(store, OLD_COUNT, (ACCOUNT, to_us(at)))[0]
    return int(count), None if first is None else from_us(first)


def _agrees(store: Store, expected: int) -> None:
    """The count, the first expiry and the operator's list of ids agree with §7.1.6 and
    the old statement, now and at times around each expiry; and every row's `decided_by`
    is set exactly when one of its challenges is valid or invalid."""
    expiries = [from_us(r[0]) for r in _sql(store, "SELECT expires FROM authorizations", ())]
    for at in [NOW, *(e + d for e in expiries for d in (-timedelta(seconds=1), timedelta()))]:
        got = store.orders.pending_authorizations(ACCOUNT, at)
        assert got == _derived(store, at) == _old(store, at), at
        ids = inspect_repo.pending_authorization_ids(store.db, ACCOUNT, at)
        assert len(ids) == got[0]
    assert store.orders.pending_authorizations(ACCOUNT, NOW)[0] == expected
    marked = _sql(
        store,
        "SELECT a.id, a.decided_by, (SELECT MIN(c.id) FROM challenges c WHERE "
        "c.authz_id = a.id AND c.status IN ('valid', 'invalid')) FROM authorizations a",
        (),
    )
    assert [(i, d) for i, d, _ in marked] == [(i, c) for i, _, c in marked]


def test_the_count_follows_every_change_of_status(store: Store) -> None:
    orders = store.orders
    for n in range(12):
        orders.add_authorization(_authz(n))
    _agrees(store, 12)
    # processing: still pending (§7.1.6: only valid or invalid decides)
    assert orders.start_challenge("z000-0", NOW, "https://ca.test/acct/1")
    _agrees(store, 12)
    # valid, with a later expiry (a success extends the authorization)
    orders.finish_challenge("z000-0", NOW, None, NOW + timedelta(days=30))
    _agrees(store, 11)
    # invalid, without evidence: the path that wrote no authorization row before
    assert orders.start_challenge("z001-1", NOW, "https://ca.test/acct/1")
    orders.finish_challenge("z001-1", NOW, {"type": "urn:ietf:params:acme:error:dns"})
    _agrees(store, 10)
    # invalid and valid with evidence (MPIC, DNSSEC)
    evidence = records.ValidationEvidence("2/3", ({"name": "a"},), True, False)
    assert orders.start_challenge("z002-0", NOW, "https://ca.test/acct/1")
    orders.finish_challenge("z002-0", NOW, {"type": "x"}, None, evidence)
    assert orders.start_challenge("z003-0", NOW, "https://ca.test/acct/1")
    orders.finish_challenge("z003-0", NOW, None, NOW + timedelta(days=1), evidence)
    _agrees(store, 8)
    # recovery: a stale validation taken over, then finished
    assert orders.start_challenge("z004-1", NOW - timedelta(hours=1), "https://ca.test/acct/1")
    (stale,) = orders.stale_challenges(NOW)
    assert stale.started is not None and orders.restart_challenge(stale.id, stale.started, NOW)
    _agrees(store, 8)
    orders.finish_challenge(stale.id, NOW, None, NOW + timedelta(days=30))
    _agrees(store, 7)
    # a finish that finds its challenge no longer processing changes nothing more, and
    # one that finds it never started leaves it pending
    orders.finish_challenge("z004-1", NOW, {"type": "late"})
    orders.finish_challenge("z005-0", NOW, {"type": "never started"})
    _agrees(store, 7)
    # deactivated (§7.5.2), pending and valid ones
    orders.set_authorization_status("z006", AuthorizationStatus.DEACTIVATED)
    orders.set_authorization_status("z000", AuthorizationStatus.DEACTIVATED)
    _agrees(store, 6)
    # revoked, stored as a client or the CA sets it
    orders.set_authorization_status("z007", AuthorizationStatus.REVOKED)
    _agrees(store, 5)
    # stored with a challenge decided already, and expired ones (pending and valid)
    orders.add_authorization(_authz(20, statuses=(ChallengeStatus.VALID, ChallengeStatus.PENDING)))
    orders.add_authorization(
        _authz(21, statuses=(ChallengeStatus.PENDING, ChallengeStatus.INVALID))
    )
    orders.add_authorization(_authz(22, expires=NOW - timedelta(seconds=1)))
    orders.add_authorization(
        _authz(23, NOW - timedelta(days=1), (ChallengeStatus.VALID, ChallengeStatus.PENDING))
    )
    orders.add_authorization(_authz(24, expires=NOW))  # expired at NOW (§7.1.6: now >= expires)
    _agrees(store, 5)
    # the operator's deactivation of the account deactivates the pending ones left
    assert admin.deactivate_account(store, ACCOUNT, NOW) == 5
    _agrees(store, 0)


def test_the_count_statement_reads_the_undecided_only(store: Store) -> None:
    """Decided authorizations are many, pending ones few: the count is planned on
    ix_authz_pending (no scan of the table, no probe of challenges)."""
    for n in range(40):
        decided = (ChallengeStatus.VALID, ChallengeStatus.PENDING)
        store.orders.add_authorization(_authz(n, statuses=decided if n >= 3 else TYPES_PENDING))
    with store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    assert store.orders.pending_authorizations(ACCOUNT, NOW) == (3, NOW + timedelta(days=7))
    for plan in (
        _plan(store, orders_repo._PENDING_AUTHZS, (ACCOUNT, to_us(NOW))),
        _plan(store, _inspect_text(store), (ACCOUNT, to_us(NOW))),
    ):
        assert "ix_authz_pending" in plan, plan
        assert "challenges" not in plan, plan
        assert "SCAN" not in plan and "Seq Scan" not in plan, plan


def _inspect_text(store: Store) -> str:
    """`inspect.pending_authorization_ids`' statement, compiled for the store's database
    with `?` marks (its parameters the account and the time)."""
    query = sa.select(authorizations.c.id).where(
        authorizations.c.account_id == sa.bindparam("a"),
        sa.text(UNDECIDED),
        authorizations.c.expires > sa.bindparam("t"),
    )
    text = str(query.compile(dialect=store.engine.dialect))
    return text.replace("%(a)s", "?").replace("%(t)s", "?").replace(":a", "?").replace(":t", "?")


def _plan(store: Store, text: str, params: tuple[Any, ...]) -> str:
    """SQLite's EXPLAIN QUERY PLAN, or PostgreSQL's EXPLAIN with sequential scans priced
    out (so the plan names an index whenever one can serve the statement)."""
    with store.db.raw() as c:
        if store.engine.dialect.name == "sqlite":
            return "\n".join(str(r[-1]) for r in c.all(f"EXPLAIN QUERY PLAN {text}", params))
        c.run("SET LOCAL enable_seqscan = off", ())
        return "\n".join(str(r[0]) for r in c.all(f"EXPLAIN {text}", params))


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_no_read_of_authorizations_binds_the_stored_status(dialect: str) -> None:
    """SQLite compares a statement's `stored_status = ?` with ix_authz_pending's predicate
    by the value bound, and then prepares the statement again at every binding: the
    reads by account write the stored status in."""
    reads = orders_repo._READS[dialect]
    for text in (reads.reusable, reads.reusable_of, orders_repo._PENDING_AUTHZS):
        assert "stored_status = ?" not in text and "stored_status = 'pending'" in text

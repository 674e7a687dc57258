"""The pending count on a database at the current schema where a process of the release
before migration 0010 still runs (docs/server.md, Upgrades: a new release's processes
start beside an older release's once the database is upgraded). The older code records a
validation's outcome on the challenge alone and knows nothing of `decided_by`: the
authorizations it decides must not stay counted as pending (RFC 8555 §7.1.6), on SQLite
and PostgreSQL, and a database upgraded while such rows exist is mended."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acmekit import migrate
from acmekit.database import create_engine, to_us
from acmekit.migrate import SERVER
from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
    authorization_status,
)
from acmekit.server import records
from acmekit.server.repos.accounts import AccountRepository
from acmekit.server.repos.base import Database
from acmekit.server.repos.orders import OrderRepository
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNT = "acct-older"
URI = "https://ca.test/acct/older"

# What the release before migration 0010 sent to record an outcome (its
# `finish_challenge`), word for word: a success extends the authorization, a failure
# without evidence writes the challenge's row only.
OLDER_EXTEND = (
    "UPDATE authorizations SET expires = ? WHERE id = "
    "(SELECT authz_id FROM challenges WHERE id = ?)"
)
OLDER_OUTCOME = (
    "UPDATE challenges SET status = ?, validated = ?, error = ? WHERE id = ? AND status = ?"
)


@pytest.fixture(params=BACKEND_PARAMS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(str(request.param), tmp_path, "ca.db") as found:
        yield found


class _Repos:
    """The CA's repositories over a database at any revision (a `Store` refuses one
    that is not at this release's)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.db = Database(engine)
        self.orders = OrderRepository(self.db)
        self.accounts = AccountRepository(self.db)


def _store(engine: sa.Engine) -> _Repos:
    store = _Repos(engine)
    store.accounts.add_account(
        records.AccountRecord(ACCOUNT, "t" * 43, {"kty": "EC"}, (), AccountStatus.VALID, NOW)
    )
    for n in range(4):
        authz_id = f"older{n}"
        chs = tuple(
            records.ChallengeRecord(
                f"{authz_id}-{i}", authz_id, kind, f"tok-{n}-{i}", ChallengeStatus.PENDING
            )
            for i, kind in enumerate((ChallengeType.HTTP_01, ChallengeType.DNS_01))
        )
        name = Identifier(IdentifierType.DNS, f"older{n}.example.test")
        store.orders.add_authorization(
            records.AuthorizationRecord(
                authz_id,
                ACCOUNT,
                name,
                False,
                AuthorizationStatus.PENDING,
                NOW + timedelta(days=7),
                chs,
            )
        )
    return store


def _older_finish(store: _Repos, challenge_id: str, error: dict[str, Any] | None) -> None:
    """An outcome as the older release records it (one transaction)."""
    status = ChallengeStatus.INVALID if error else ChallengeStatus.VALID
    with store.db.raw() as c:
        if error is None:
            c.run(OLDER_EXTEND, (to_us(NOW + timedelta(days=30)), challenge_id))
        c.run(
            OLDER_OUTCOME,
            (
                str(status),
                None if error else to_us(NOW),
                None if error is None else '{"type": "x"}',
                challenge_id,
                str(ChallengeStatus.PROCESSING),
            ),
        )


def _derived(store: _Repos) -> int:
    found = store.orders.authorizations([f"older{n}" for n in range(4)])
    return sum(
        authorization_status(a.stored_status, (c.status for c in a.challenges), a.expires, NOW)
        == AuthorizationStatus.PENDING
        for a in found
    )


def _decide_two(store: _Repos, first: int) -> None:
    """Authorization `first` valid, `first + 1` invalid, by the older release."""
    for n, error in ((first, None), (first + 1, {"type": "x"})):
        assert store.orders.start_challenge(f"older{n}-0", NOW, URI)
        _older_finish(store, f"older{n}-0", error)


def test_outcomes_the_older_release_records_leave_no_pending_count(url: str) -> None:
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, SERVER)
        store = _store(engine)
        _decide_two(store, 0)
        assert _derived(store) == 2
        assert store.orders.pending_authorizations(ACCOUNT, NOW)[0] == 2
    finally:
        engine.dispose()


def test_an_upgrade_mends_what_the_older_release_decided_at_0010(url: str) -> None:
    """Rows an older process decided on a database at 0010 (before the schema recorded
    its outcomes itself) are counted right once the database is at head."""
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, SERVER, "0010")
        store = _store(engine)
        _decide_two(store, 0)
        migrate.upgrade(engine, SERVER)
        assert store.orders.pending_authorizations(ACCOUNT, NOW)[0] == _derived(store) == 2
        _decide_two(store, 2)
        assert store.orders.pending_authorizations(ACCOUNT, NOW)[0] == _derived(store) == 0
        # down to 0009 and up again: the same
        migrate.downgrade(engine, SERVER, "0009")
        migrate.upgrade(engine, SERVER)
        assert store.orders.pending_authorizations(ACCOUNT, NOW)[0] == _derived(store) == 0
    finally:
        engine.dispose()


def test_an_outcome_committed_during_the_upgrade_is_not_missed(url: str) -> None:
    """An older process records a failure (its challenge's row alone) in a transaction
    that commits while the upgrade from 0009 runs, after 0010's fill has read the
    challenges: the upgraded database counts that authorization as decided."""
    engine = create_engine(url)
    older = create_engine(url)
    try:
        migrate.upgrade(engine, SERVER, "0009")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO authorizations (id, account_id, identifier_type, "
                    "identifier_value, wildcard, stored_status, expires) VALUES "
                    "('during', :a, 'dns', 'during.example.test', :w, 'pending', :e)"
                ),
                {"a": ACCOUNT, "w": False, "e": to_us(NOW + timedelta(days=7))},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO challenges (id, authz_id, type, token, status) "
                    "VALUES ('during-0', 'during', 'http-01', 'tok-during', 'processing')"
                )
            )
        postgres = engine.dialect.name == "postgresql"
        with older.connect() as conn:
            # OLDER_OUTCOME, a failure, its parameters by name
            outcome = "UPDATE challenges SET status = :s, validated = :v, error = :e "
            conn.execute(
                sa.text(outcome + "WHERE id = :i AND status = :was"),
                {"s": "invalid", "v": None, "e": '{"type": "x"}', "i": "during-0"}
                | {"was": "processing"},
            )
            failed: list[BaseException] = []

            def upgrade() -> None:
                try:
                    migrate.upgrade(engine, SERVER)
                except BaseException as exc:
                    failed.append(exc)

            thread = threading.Thread(target=upgrade)
            thread.start()
            # On PostgreSQL the older transaction commits once the upgrade has read the
            # challenges and waits for it, if it ever does; SQLite's upgrade waits for
            # the older write's lock before it reads anything, so any moment will do.
            while postgres and thread.is_alive() and not _upgrade_waits(older):
                thread.join(0.05)
            conn.commit()
        thread.join()
        assert failed == []
        store = _Repos(engine)
        assert store.orders.pending_authorizations(ACCOUNT, NOW)[0] == 0
    finally:
        older.dispose()
        engine.dispose()


def _upgrade_waits(engine: sa.Engine) -> bool:
    """Whether a session waits for a lock on this database (the upgrade's, on the older
    transaction's table)."""
    waiting = (
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(waiting)).scalar())

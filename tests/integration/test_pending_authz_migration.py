"""Migration 0010 on SQLite and PostgreSQL: a database at 0009 holding authorizations in
every state (pending, processing, valid, invalid, deactivated, revoked, expired) gets
`decided_by` filled in from the challenges, and each account's pending count and first
expiry are what the statement of 0009's code answered; a downgrade gives back the rows
as they were, without the column and the index, and upgrading again fills them again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acmekit import migrate
from acmekit.database import create_engine, from_us, to_us
from acmekit.migrate import SERVER
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 12, 1, tzinfo=UTC)
# The count as 0009's code read it.
OLD_COUNT = (
    "SELECT COUNT(*), MIN(a.expires) FROM authorizations a WHERE a.account_id = :a "
    "AND a.stored_status = 'pending' AND a.expires > :t AND NOT EXISTS (SELECT 1 "
    "FROM challenges c WHERE c.authz_id = a.id AND c.status IN ('valid', 'invalid'))"
)
# Each authorization: (stored status, expiry from NOW in hours, its challenges' statuses).
STATES: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "pending": ("pending", 24, ("pending", "pending")),
    "pending-later": ("pending", 48, ("pending", "pending", "pending")),
    "processing": ("pending", 12, ("processing", "pending")),
    "valid": ("pending", 720, ("valid", "pending")),
    "valid-second": ("pending", 720, ("pending", "valid")),
    "invalid": ("pending", 24, ("invalid", "pending")),
    "deactivated": ("deactivated", 24, ("pending", "pending")),
    "deactivated-valid": ("deactivated", 720, ("valid", "pending")),
    "revoked": ("revoked", 720, ("valid",)),
    "expired": ("pending", -1, ("pending", "pending")),
    "expired-valid": ("pending", -2, ("valid", "pending")),
    "no-challenges": ("pending", 6, ()),
}
ACCOUNTS = ("acct-a", "acct-b")


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _fill(engine: sa.Engine) -> None:
    """Rows as 0009's schema holds them, for two accounts (the second without the
    processing one)."""
    authz = sa.text(
        "INSERT INTO authorizations (id, account_id, identifier_type, identifier_value, "
        "wildcard, stored_status, expires) VALUES (:i, :a, 'dns', :v, :w, :s, :e)"
    )
    chall = sa.text(
        "INSERT INTO challenges (id, authz_id, type, token, status) VALUES (:i, :z, :t, :k, :s)"
    )
    types = ("http-01", "dns-01", "tls-alpn-01")
    with engine.begin() as conn:
        for account in ACCOUNTS:
            for name, (stored, hours, statuses) in STATES.items():
                if account == "acct-b" and name == "processing":
                    continue
                authz_id = f"{account}-{name}"
                expires = to_us(NOW + timedelta(hours=hours))
                conn.execute(
                    authz,
                    {"i": authz_id, "a": account, "v": f"{name}.example.test"}
                    | {"w": False, "s": stored, "e": expires},
                )
                for n, status in enumerate(statuses):
                    conn.execute(
                        chall,
                        {"i": f"{authz_id}-{n}", "z": authz_id, "t": types[n]}
                        | {"k": f"tok-{authz_id}-{n}", "s": status},
                    )


def _old_counts(engine: sa.Engine) -> dict[tuple[str, int], tuple[int, int | None]]:
    """Each account's count and first expiry, now and at each hour around the expiries."""
    found = {}
    with engine.connect() as conn:
        for account in ACCOUNTS:
            for hours in (-3, 0, 5, 6, 11, 12, 23, 24, 47, 48, 719, 720):
                at = to_us(NOW + timedelta(hours=hours))
                count, first = conn.execute(sa.text(OLD_COUNT), {"a": account, "t": at}).one()
                found[(account, hours)] = (int(count), None if first is None else int(first))
    return found


def _rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    with engine.connect() as conn:
        for table in ("authorizations", "challenges"):
            rows = conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")).all()
            found[table] = [tuple(r) for r in rows]
    return found


def _indexes(engine: sa.Engine) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(engine).get_indexes("authorizations")}


def _columns(engine: sa.Engine) -> set[str]:
    return {str(c["name"]) for c in sa.inspect(engine).get_columns("authorizations")}


def _decided(engine: sa.Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, decided_by FROM authorizations")).all()
    return {str(r[0]): r[1] for r in rows}


def _assert_upgraded(url: str, engine: sa.Engine, old: dict[Any, Any]) -> None:
    assert "ix_authz_pending" in _indexes(engine)
    decided = _decided(engine)
    # the challenge that decided each (valid or invalid), whatever the stored status
    assert {k: v for k, v in decided.items() if v is not None} == {
        f"{a}-{name}": f"{a}-{name}-{n}"
        for a in ACCOUNTS
        for name, n in (
            ("valid", 0),
            ("valid-second", 1),
            ("invalid", 0),
            ("deactivated-valid", 0),
            ("revoked", 0),
            ("expired-valid", 0),
        )
    }
    store = Store.from_url(url, auto_upgrade=False)
    try:
        for (account, hours), (count, first) in old.items():
            got = store.orders.pending_authorizations(account, NOW + timedelta(hours=hours))
            assert got == (count, None if first is None else from_us(first)), (account, hours)
    finally:
        store.engine.dispose()


def test_0010_fills_in_the_decided_and_the_count_is_unchanged(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, "ca.db") as url:
        engine = create_engine(url)
        try:
            migrate.upgrade(engine, SERVER, "0009")
            _fill(engine)
            old = _old_counts(engine)
            assert old[("acct-a", 0)] == (4, to_us(NOW + timedelta(hours=6)))
            assert old[("acct-b", 0)] == (3, to_us(NOW + timedelta(hours=6)))
            before = _rows(engine)
            migrate.upgrade(engine, SERVER)
            assert migrate.current(engine, SERVER) == migrate.head(SERVER)
            _assert_upgraded(url, engine, old)
            migrate.downgrade(engine, SERVER, "0009")
            assert "decided_by" not in _columns(engine)
            assert "ix_authz_pending" not in _indexes(engine)
            assert "ix_authz_reuse" in _indexes(engine)
            assert _rows(engine) == before
            assert _old_counts(engine) == old
            migrate.upgrade(engine, SERVER)
            _assert_upgraded(url, engine, old)
        finally:
            engine.dispose()

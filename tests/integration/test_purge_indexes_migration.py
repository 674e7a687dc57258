"""Migration 0013 on SQLite and PostgreSQL: the purge's indexes on the expiry of
authorizations and of orders without a certificate are built (on PostgreSQL
CONCURRENTLY, and valid), dropped by the downgrade to 0012 with the rows kept, and built
again by the next upgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit import migrate
from acmekit.database import create_engine
from acmekit.migrate import SERVER
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

INDEXES = {("authorizations", "ix_authz_expires"), ("orders", "ix_orders_unissued")}


def _indexes(engine: sa.Engine) -> set[tuple[str, str]]:
    found = set()
    inspector = sa.inspect(engine)
    for table in ("authorizations", "orders"):
        for index in inspector.get_indexes(table):
            if index["name"] in {name for _, name in INDEXES}:
                assert index["column_names"] == ["expires", "id"]
                found.add((table, str(index["name"])))
    return found


def _valid(engine: sa.Engine) -> bool:
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT bool_and(indisvalid) FROM pg_index WHERE indexrelid IN "
                    "(to_regclass('ix_authz_expires'), to_regclass('ix_orders_unissued'))"
                )
            ).scalar()
        )


def _fill(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO authorizations (id, account_id, identifier_type, "
                "identifier_value, wildcard, stored_status, expires) "
                "VALUES ('z1', 'a1', 'dns', 'x.test', false, 'pending', 5)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO orders (id, account_id, identifiers, authz_ids, expires, created) "
                "VALUES ('o1', 'a1', '[]', '[\"z1\"]', 5, 1)"
            )
        )


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_the_purge_indexes_up_and_down(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, "ca.db") as url:
        engine = create_engine(url)
        try:
            migrate.upgrade(engine, SERVER, "0012")
            _fill(engine)
            assert _indexes(engine) == set()
            migrate.upgrade(engine, SERVER, "0013")
            assert migrate.current(engine, SERVER) == "0013"
            assert _indexes(engine) == INDEXES and _valid(engine)
            migrate.downgrade(engine, SERVER, "0012")
            assert _indexes(engine) == set()
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar() == 1
            migrate.upgrade(engine, SERVER, "0013")
            assert _indexes(engine) == INDEXES and _valid(engine)
        finally:
            engine.dispose()

"""The CT log's own Alembic environment: a migrated database and the tables the code
declares agree, on SQLite and PostgreSQL, and the revision goes down and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from acmekit import migrate
from acmekit.ct import schema
from acmekit.database import create_engine
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_the_ct_tables_and_their_migrations_agree(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, "ct.db", prefix="acmekit_ct") as url:
        engine = create_engine(url)
        try:
            migrate.upgrade(engine, migrate.CT)
            assert migrate.current(engine, migrate.CT) == migrate.head(migrate.CT)
            with engine.connect() as conn:
                context = MigrationContext.configure(
                    conn, opts={"version_table": migrate.CT.version_table}
                )
                assert list(compare_metadata(context, schema.metadata)) == []
            migrate.downgrade(engine, migrate.CT, "base")
            assert not {t for t in sa.inspect(engine).get_table_names() if t.startswith("ct_e")}
            migrate.upgrade(engine, migrate.CT)
            assert "ct_entries" in sa.inspect(engine).get_table_names()
        finally:
            engine.dispose()

"""Databases as acmekit v0.1.0 left them (tests/fixtures/v0.1.0): the tables of revision
0001, the fixture's rows, and no version table, on SQLite or PostgreSQL."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import sqlalchemy as sa

from acmekit import migrate
from acmekit.database import create_engine

# the shared starters sit next to the tests, which keep the fixture files
FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "v0.1.0"


def load_v010(kind: str, url: str) -> None:
    """Fill the empty database at `url` with the v0.1.0 fixture `kind` ("ca" or "fleet")."""
    script = (FIXTURES / f"{kind}.sql").read_text()
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.executescript(script)
        conn.close()
        return
    # PostgreSQL: v0.1.0's tables by revision 0001, then the fixture's rows copied over
    # from SQLite, then no version table, as v0.1.0 made it.
    schema = migrate.SERVER if kind == "ca" else migrate.FLEET
    engine = create_engine(url)
    with tempfile.TemporaryDirectory() as tmp:
        source_url = f"sqlite:///{tmp}/{kind}.db"
        load_v010(kind, source_url)
        source = sa.create_engine(source_url)
        try:
            migrate.upgrade(engine, schema, "0001")
            _copy(source, engine)
        finally:
            source.dispose()
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {schema.version_table}"))
    engine.dispose()


def _copy(source: sa.Engine, target: sa.Engine) -> None:
    tables = sa.MetaData()
    tables.reflect(target)
    with source.connect() as src, target.begin() as dst:
        for table in tables.sorted_tables:
            if table.name.endswith("alembic_version"):
                continue
            rows = [dict(r._mapping) for r in src.execute(sa.select(table))]
            for row in rows:
                for col in table.columns:
                    if isinstance(col.type, sa.Boolean) and row[col.name] is not None:
                        row[col.name] = bool(row[col.name])
            if rows:
                dst.execute(table.insert(), rows)
        if target.dialect.name == "postgresql" and "fleet_ca_issuances" in tables.tables:
            # a serial column: go on after the copied ids
            dst.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence('fleet_ca_issuances', 'id'), "
                    "COALESCE(MAX(id), 0) + 1, false) FROM fleet_ca_issuances"
                )
            )

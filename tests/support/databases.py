"""Databases for store tests and benchmarks: an SQLite file, or a fresh database on the
PostgreSQL server that runs on 127.0.0.1:5432 on development and CI machines."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


@contextmanager
def fresh_postgres_database(prefix: str = "acmekit") -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def fresh_database(
    backend: str, directory: Path, filename: str, *, prefix: str = "acmekit"
) -> Iterator[str]:
    """A new, empty database on `backend` (one of BACKENDS); its URL. On SQLite the file
    `directory/filename`, removed afterwards with its -wal and -shm files; on PostgreSQL
    a database named `prefix_...`, dropped afterwards."""
    if backend != "sqlite":
        with fresh_postgres_database(prefix) as url:
            yield url
        return
    path = directory / filename
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

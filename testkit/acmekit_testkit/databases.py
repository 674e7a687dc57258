"""Databases for store tests and benchmarks: an SQLite file, or a fresh database on the
PostgreSQL server that runs on 127.0.0.1:5432 on development and CI machines."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from acmekit.server.store import Store

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
ADMIN_URL = f"postgresql+psycopg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"
BACKENDS = ("sqlite", "postgresql")


def postgres_reachable(
    host: str = POSTGRES_HOST, port: int = POSTGRES_PORT, timeout: float = 1.0
) -> bool:
    """Whether something accepts TCP connections where the PostgreSQL server should be."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def fresh_postgres_database(prefix: str = "acmekit") -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
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


@contextmanager
def fresh_store(backend: str, directory: Path, filename: str) -> Iterator[Store]:
    """The CA's store (migrated) on a fresh database (`fresh_database`), its engine
    disposed of afterwards."""
    from acmekit.server.store import Store

    with fresh_database(backend, directory, filename) as url:
        store = Store.from_url(url)
        try:
            yield store
        finally:
            store.engine.dispose()

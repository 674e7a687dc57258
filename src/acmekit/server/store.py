"""The CA's storage: SQLAlchemy Core over SQLite (embedded default) or PostgreSQL.

The tables are in server/schema.py; the records are read and written by one repository
per aggregate (server/repos/): `accounts` (with nonces, EAB keys and settings), `orders`
(with authorizations, challenges and finalize claims), `certificates` (with serial
reservations, revocations, blocked keys, CRLs and ARI) and rate-limit `buckets`.
A certificate's serial is recorded (row with pem NULL) before it is signed, so no signed
certificate is ever unrecorded; a crash leaves a reservation that recovery marks
abandoned.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy.engine import Engine

from acmekit import migrate
from acmekit.database import create_engine
from acmekit.server.repos.accounts import AccountRepository
from acmekit.server.repos.base import Cursor, Database
from acmekit.server.repos.buckets import BucketRepository
from acmekit.server.repos.certificates import CertificateRepository
from acmekit.server.repos.orders import OrderRepository
from acmekit.server.repos.purge import PurgeRepository


class Store:
    """The CA's repositories over one database (and so one set of connections)."""

    def __init__(self, engine: Engine, auto_upgrade: bool = True) -> None:
        """Over `engine`, upgraded to this schema first (or, `auto_upgrade` off, refused
        with `SchemaOutOfDate` if it is not at it)."""
        self.engine = engine
        migrate.prepare(engine, migrate.SERVER, auto_upgrade)
        self.db = Database(engine)
        # A database server (PostgreSQL), whose commits are round trips and log flushes,
        # rather than SQLite's file in this process.
        self.remote = engine.dialect.name != "sqlite"
        self.accounts = AccountRepository(self.db)
        self.orders = OrderRepository(self.db)
        self.certificates = CertificateRepository(self.db)
        self.buckets = BucketRepository(self.db)
        self.purge = PurgeRepository(self.db)

    def transaction(self, begin_later: bool = False) -> AbstractContextManager[Cursor]:
        """One transaction across repositories (a method given it as `within` runs in
        it): committed when the block ends, rolled back if it raises. `begin_later`:
        BEGIN sent with the first statements (`Database.raw`)."""
        return self.db.raw(begin_later)

    @classmethod
    def from_url(cls, url: str, auto_upgrade: bool = True) -> Store:
        return cls(create_engine(url, pre_ping=False), auto_upgrade)

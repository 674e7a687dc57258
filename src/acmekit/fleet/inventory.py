"""The fleet's inventory: SQLAlchemy Core over SQLite (default) or PostgreSQL, as one
repository per aggregate (`acmekit.fleet.repos`) over the tables of
`acmekit.fleet.schema`.

Times are integer microseconds since the epoch (UTC), as in the CA's store.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from acmekit import migrate
from acmekit.database import create_engine as create_engine
from acmekit.fleet.repos.cas import CaRepository
from acmekit.fleet.repos.challenges import ChallengeRepository, SettingRepository
from acmekit.fleet.repos.names import NameRepository
from acmekit.fleet.repos.names import NameTaken as NameTaken
from acmekit.fleet.repos.ondemand import OnDemandRepository
from acmekit.fleet.repos.sites import SiteRepository

PING_IDLE = 1.0  # seconds a pooled connection may sit unused before it is pinged


class Inventory:
    """The fleet's repositories over one database: `sites`, `names`, `cas`,
    `challenges`, `settings` and `on_demand`."""

    def __init__(self, engine: Engine, auto_upgrade: bool = True) -> None:
        """Over `engine`, upgraded to this schema first (or, `auto_upgrade` off, refused
        with `SchemaOutOfDate` if it is not at it)."""
        self.engine = engine
        migrate.prepare(engine, migrate.FLEET, auto_upgrade)
        self.names = NameRepository(engine)
        self.sites = SiteRepository(engine, self.names)
        self.cas = CaRepository(engine)
        self.challenges = ChallengeRepository(engine)
        self.settings = SettingRepository(engine)
        self.on_demand = OnDemandRepository(engine)

    @classmethod
    def from_url(cls, url: str, auto_upgrade: bool = True) -> Inventory:
        # A worker checks out a connection for each of a dozen short transactions per
        # site: a ping on each was a third of them (docs/decisions.md). The inventory
        # holds private keys: a failed statement's logged error must not quote them.
        engine = create_engine(url, pre_ping=False, ping_idle=PING_IDLE, hide_parameters=True)
        return cls(engine, auto_upgrade)

    def close(self) -> None:
        self.engine.dispose()

"""The fleet's inventory: SQLAlchemy Core over SQLite (default) or PostgreSQL.

How work is shared between workers:
- A site is due when `next_action_at <= now` (an indexed range scan). Leasing a batch
  is one UPDATE over `SELECT ... ORDER BY next_action_at LIMIT n FOR UPDATE SKIP LOCKED`
  on PostgreSQL, so concurrent workers take disjoint batches without waiting; SQLite has
  one writer at a time, and the same statement (without the locking clause) is atomic.
- Leasing sets `lease_owner`, `lease_until` and also moves `next_action_at` to
  `lease_until`: a worker that dies leaves the site to come due again when its lease
  expires, with no sweeper.
- Every write a worker makes afterwards is conditional on `lease_owner` being itself
  (a compare-and-set); a new certificate version is stored only if the site's
  `current_version` is still the one the worker started from, so one renewal can never
  produce two current certificates.

Times are integer microseconds since the epoch (UTC), as in the CA's store.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from acmekit.fleet.model import (
    CertVersion,
    ChallengeMethod,
    Deployment,
    DesiredState,
    Site,
    SiteState,
)

metadata = sa.MetaData()

sites = sa.Table(
    "fleet_sites",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("names", sa.Text, nullable=False),  # JSON list
    sa.Column("primary_name", sa.String(255), nullable=False, index=True),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("desired", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("next_action_at", sa.BigInteger, index=True),
    sa.Column("renew_at", sa.BigInteger),
    sa.Column("current_version", sa.Integer, nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", sa.BigInteger),
    sa.Column("failure_count", sa.Integer, nullable=False),
    sa.Column("last_problem", sa.Text),  # JSON
    sa.Column("order_url", sa.Text),
    sa.Column("order_key_pem", sa.Text),
)

certificates = sa.Table(
    "fleet_certificates",
    metadata,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("serial", sa.String(48), nullable=False),
    sa.Column("not_before", sa.BigInteger, nullable=False),
    sa.Column("not_after", sa.BigInteger, nullable=False),
    sa.Column("fullchain_pem", sa.Text, nullable=False),
    sa.Column("key_pem", sa.Text, nullable=False),
    sa.Column("issued", sa.BigInteger, nullable=False),
    sa.Column("ca", sa.Text, nullable=False),
)

deployments = sa.Table(
    "fleet_deployments",
    metadata,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("edge", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated", sa.BigInteger, nullable=False),
    sa.Column("failure_count", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
)

challenges = sa.Table(
    "fleet_challenges",
    metadata,
    sa.Column("token", sa.String(255), primary_key=True),
    sa.Column("key_authorization", sa.Text, nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),
)

settings = sa.Table(
    "fleet_settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def create_engine(url: str) -> Engine:
    """An engine for `sqlite:///FILE` (WAL, busy timeout) or `postgresql://...`."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def new_site_id() -> str:
    return secrets.token_hex(8)


def _site(row: Any) -> Site:
    return Site(
        id=row.id,
        names=tuple(json.loads(row.names)),
        method=ChallengeMethod(row.method),
        desired=DesiredState(row.desired),
        state=SiteState(row.state),
        created=row.created,
        next_action_at=row.next_action_at,
        renew_at=row.renew_at,
        current_version=row.current_version,
        lease_owner=row.lease_owner,
        lease_until=row.lease_until,
        failure_count=row.failure_count,
        last_problem=None if row.last_problem is None else json.loads(row.last_problem),
        order_url=row.order_url,
    )


def _version(row: Any) -> CertVersion:
    return CertVersion(
        site_id=row.site_id,
        version=row.version,
        serial=row.serial,
        not_before=row.not_before,
        not_after=row.not_after,
        fullchain_pem=row.fullchain_pem,
        key_pem=row.key_pem,
        issued=row.issued,
        ca=row.ca,
    )


def _new_row(names: Sequence[str], method: ChallengeMethod, now: int) -> dict[str, Any]:
    return {
        "id": new_site_id(),
        "names": json.dumps(list(names)),
        "primary_name": names[0],
        "method": str(method),
        "desired": str(DesiredState.ACTIVE),
        "state": str(SiteState.PENDING),
        "created": now,
        "next_action_at": now,
        "renew_at": None,
        "current_version": 0,
        "lease_owner": None,
        "lease_until": None,
        "failure_count": 0,
        "last_problem": None,
        "order_url": None,
        "order_key_pem": None,
    }


class _Lost(Exception):
    """A compare-and-set found the row changed: roll the transaction back."""


class Inventory:
    """Sites, certificate versions, deployments. Methods are short transactions and
    take `now` from the caller; none reads a clock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    @classmethod
    def from_url(cls, url: str) -> Inventory:
        return cls(create_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # sites ------------------------------------------------------------------------

    def add_site(self, names: Sequence[str], method: ChallengeMethod, now: int) -> Site:
        row = _new_row(names, method, now)
        with self._tx() as c:
            c.execute(sites.insert().values(**row))
        return self._must(row["id"])

    def add_sites(
        self, batch: Iterable[Sequence[str]], method: ChallengeMethod, now: int
    ) -> list[str]:
        """Insert many sites in one transaction; their ids, in order."""
        rows = [_new_row(names, method, now) for names in batch]
        if rows:
            with self._tx() as c:
                c.execute(sites.insert(), rows)
        return [r["id"] for r in rows]

    def _must(self, site_id: str) -> Site:
        found = self.site(site_id)
        assert found is not None
        return found

    def site(self, site_id: str) -> Site | None:
        with self._tx() as c:
            row = c.execute(sa.select(sites).where(sites.c.id == site_id)).first()
        return None if row is None else _site(row)

    def site_by_name(self, name: str) -> Site | None:
        """The site, not removed, whose first name is `name`."""
        with self._tx() as c:
            row = c.execute(
                sa.select(sites)
                .where(sites.c.primary_name == name, sites.c.desired == DesiredState.ACTIVE)
                .limit(1)
            ).first()
        return None if row is None else _site(row)

    def sites(
        self, state: SiteState | None = None, after: str = "", limit: int = 100
    ) -> list[Site]:
        """Sites in id order, from just after `after`, optionally of one state."""
        query = sa.select(sites).where(sites.c.id > after).order_by(sites.c.id).limit(limit)
        if state is not None:
            query = query.where(sites.c.state == state)
        with self._tx() as c:
            return [_site(r) for r in c.execute(query)]

    def counts_by_state(self) -> dict[SiteState, int]:
        query = sa.select(sites.c.state, sa.func.count()).group_by(sites.c.state)
        with self._tx() as c:
            found = {SiteState(s): int(n) for s, n in c.execute(query)}
        return {s: found.get(s, 0) for s in SiteState}

    def remove_site(self, site_id: str, now: int) -> bool:
        """Stop renewing; a worker removes the site from the edges next."""
        with self._tx() as c:
            res = c.execute(
                sites.update()
                .where(sites.c.id == site_id)
                .values(desired=DesiredState.REMOVED, next_action_at=now)
            )
        return bool(res.rowcount == 1)

    def force_renewal(self, site_id: str, now: int) -> bool:
        with self._tx() as c:
            res = c.execute(
                sites.update()
                .where(sites.c.id == site_id, sites.c.desired == DesiredState.ACTIVE)
                .values(renew_at=now, next_action_at=now)
            )
        return bool(res.rowcount == 1)

    # leases -------------------------------------------------------------------------

    def lease_due(self, owner: str, now: int, lease: int, limit: int) -> list[Site]:
        """Take up to `limit` due sites for `owner` until `now + lease`."""
        due = (
            sa.select(sites.c.id)
            .where(sites.c.next_action_at <= now)
            .order_by(sites.c.next_action_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        until = now + lease
        stmt = (
            sites.update()
            .where(sites.c.id.in_(due.scalar_subquery()), sites.c.next_action_at <= now)
            .values(lease_owner=owner, lease_until=until, next_action_at=until)
            .returning(*sites.c)
        )
        with self._tx() as c:
            return [_site(r) for r in c.execute(stmt)]

    def next_due(self) -> int | None:
        """The earliest `next_action_at` of any site (None when nothing is planned)."""
        with self._tx() as c:
            return c.execute(sa.select(sa.func.min(sites.c.next_action_at))).scalar_one_or_none()

    def update_leased(self, site_id: str, owner: str, **values: Any) -> bool:
        """Change the site only while `owner` holds it (compare-and-set)."""
        with self._tx() as c:
            res = c.execute(
                sites.update()
                .where(sites.c.id == site_id, sites.c.lease_owner == owner)
                .values(**values)
            )
        return bool(res.rowcount == 1)

    def order_key(self, site_id: str) -> str | None:
        with self._tx() as c:
            return c.execute(
                sa.select(sites.c.order_key_pem).where(sites.c.id == site_id)
            ).scalar_one_or_none()

    def release(self, site_id: str, owner: str, next_action_at: int | None, now: int) -> bool:
        """End the lease. A site removed meanwhile comes due at once instead."""
        removed = sites.c.desired == str(DesiredState.REMOVED)
        state_removed = sites.c.state == str(SiteState.REMOVED)
        when = sa.case((sa.and_(removed, ~state_removed), now), else_=next_action_at)
        return self.update_leased(
            site_id, owner, lease_owner=None, lease_until=None, next_action_at=when
        )

    # certificates -----------------------------------------------------------------

    def store_version(self, owner: str, cert: CertVersion, renew_at: int) -> bool:
        """Make `cert` the site's current certificate if its current version is still
        `cert.version - 1` and `owner` still holds the lease; False otherwise."""
        try:
            with self._tx() as c:
                res = c.execute(
                    sites.update()
                    .where(
                        sites.c.id == cert.site_id,
                        sites.c.lease_owner == owner,
                        sites.c.current_version == cert.version - 1,
                    )
                    .values(
                        current_version=cert.version,
                        renew_at=renew_at,
                        state=SiteState.ACTIVE,
                        failure_count=0,
                        last_problem=None,
                        order_url=None,
                        order_key_pem=None,
                    )
                )
                if res.rowcount != 1:
                    raise _Lost
                c.execute(certificates.insert().values(**cert.__dict__))
        except (_Lost, sa.exc.IntegrityError):
            return False
        return True

    def versions(self, site_id: str) -> list[CertVersion]:
        query = (
            sa.select(certificates)
            .where(certificates.c.site_id == site_id)
            .order_by(certificates.c.version)
        )
        with self._tx() as c:
            return [_version(r) for r in c.execute(query)]

    def current(self, site: Site) -> CertVersion | None:
        if site.current_version == 0:
            return None
        query = sa.select(certificates).where(
            certificates.c.site_id == site.id, certificates.c.version == site.current_version
        )
        with self._tx() as c:
            row = c.execute(query).first()
        return None if row is None else _version(row)

    # deployments ------------------------------------------------------------------

    def deployments(self, site_id: str) -> dict[str, Deployment]:
        query = sa.select(deployments).where(deployments.c.site_id == site_id)
        with self._tx() as c:
            return {r.edge: Deployment(**r._mapping) for r in c.execute(query)}

    def record_deployment(
        self, site_id: str, edge: str, version: int, now: int, error: str | None
    ) -> None:
        """`version` is on `edge` now (error None), or deploying it failed with `error`."""
        with self._tx() as c:
            old = c.execute(
                sa.select(deployments)
                .where(deployments.c.site_id == site_id, deployments.c.edge == edge)
                .with_for_update()
            ).first()
            if old is None:
                c.execute(
                    deployments.insert().values(
                        site_id=site_id,
                        edge=edge,
                        version=0 if error else version,
                        updated=now,
                        failure_count=1 if error else 0,
                        last_error=error,
                    )
                )
                return
            values: dict[str, Any] = {"updated": now, "last_error": error}
            if error is None:
                values.update(version=version, failure_count=0)
            else:
                values["failure_count"] = old.failure_count + 1
            c.execute(
                deployments.update()
                .where(deployments.c.site_id == site_id, deployments.c.edge == edge)
                .values(**values)
            )

    # http-01 answers and settings -----------------------------------------------------

    def put_challenge(self, token: str, key_authorization: str, now: int) -> None:
        with self._tx() as c:
            c.execute(challenges.delete().where(challenges.c.token == token))
            c.execute(
                challenges.insert().values(
                    token=token, key_authorization=key_authorization, created=now
                )
            )

    def drop_challenge(self, token: str) -> None:
        with self._tx() as c:
            c.execute(challenges.delete().where(challenges.c.token == token))

    def challenge(self, token: str) -> str | None:
        with self._tx() as c:
            return c.execute(
                sa.select(challenges.c.key_authorization).where(challenges.c.token == token)
            ).scalar_one_or_none()

    def setting(self, name: str) -> str | None:
        with self._tx() as c:
            return c.execute(
                sa.select(settings.c.value).where(settings.c.name == name)
            ).scalar_one_or_none()

    def setting_or_store(self, name: str, default: str) -> str:
        """The stored value of `name`, storing `default` first if there is none."""
        found = self.setting(name)
        if found is not None:
            return found
        try:
            with self._tx() as c:
                c.execute(settings.insert().values(name=name, value=default))
        except sa.exc.IntegrityError:
            pass
        stored = self.setting(name)
        assert stored is not None
        return stored

    def set_setting(self, name: str, value: str) -> None:
        with self._tx() as c:
            c.execute(settings.delete().where(settings.c.name == name))
            c.execute(settings.insert().values(name=name, value=value))

"""On-demand sites: made from a name seen at an edge, within limits every process shares.

`admit` counts and adds in one transaction, which first takes a lock (PostgreSQL: a
transaction advisory lock; SQLite: the write lock, BEGIN IMMEDIATE), so processes
admitting names at once count one after the other and the limits hold fleet-wide.

`prune` forgets what came to nothing: an on-demand site still without a certificate
`retention` after it was made (its name failed validation, the CA refused it, or no one
meant it) is removed, and the rows of on-demand sites removed, by that or by the
operator, are deleted once `retention` has passed since they were made. A row counts
towards the limits for `Limits.domain_window`, so `retention` must be at least that.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from acmekit.fleet.model import ChallengeMethod, DesiredState, SiteState, name_key
from acmekit.fleet.repos import names as name_index
from acmekit.fleet.repos.base import Repository
from acmekit.fleet.repos.sites import _add_batch
from acmekit.fleet.schema import on_demand, sites

_LOCK_KEY = 0x61636D65_0000_0D0D  # "acme", on-demand admissions


class Admission(StrEnum):
    ADDED = "added"
    TAKEN = "taken"  # a site has the name already (another process was first)
    DOMAIN_LIMIT = "domain_limit"  # too many sites of its registered domain lately
    RATE_LIMIT = "rate_limit"  # too many on-demand sites in the last minute


@dataclass(frozen=True)
class Limits:
    """At most `per_domain` on-demand sites per registered domain over `domain_window`
    (microseconds) and `per_minute` over the last minute, fleet-wide."""

    per_domain: int
    domain_window: int
    per_minute: int


@dataclass(frozen=True)
class OnDemandSite:
    site_id: str
    name: str
    domain: str
    created: int
    state: SiteState


_MINUTE = 60_000_000


@dataclass(frozen=True)
class Pruned:
    given_up: int  # sites removed: no certificate within the retention
    forgotten: int  # rows deleted: their site is removed (or gone)


def _count(c: Connection, *where: sa.ColumnElement[bool]) -> int:
    return int(
        c.execute(sa.select(sa.func.count()).select_from(on_demand).where(*where)).scalar_one()
    )


class OnDemandRepository(Repository):
    def admit(
        self, name: str, domain: str, now: int, limits: Limits
    ) -> tuple[Admission, str | None]:
        """Add a pending http-01 site for `name` (counted against `domain`, its registered
        domain) unless a limit says no; (what happened, the site's id if added)."""

        def work(c: Connection) -> tuple[Admission, str | None]:
            if c.dialect.name == "postgresql":
                c.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
            else:
                # Python's sqlite3 starts a transaction only at the first write, so the
                # counts below would be read outside it: take the write lock first.
                c.exec_driver_sql("BEGIN IMMEDIATE")
            if name_index.holders(c, [name_key(name)]):
                return Admission.TAKEN, None
            if _count(c, on_demand.c.created > now - _MINUTE) >= limits.per_minute:
                return Admission.RATE_LIMIT, None
            recent = sa.and_(
                on_demand.c.domain == domain, on_demand.c.created > now - limits.domain_window
            )
            if _count(c, recent) >= limits.per_domain:
                return Admission.DOMAIN_LIMIT, None
            added = _add_batch(c, [[name]], ChallengeMethod.HTTP_01, now)
            if added.conflicts:
                return Admission.TAKEN, None
            site_id = added.ids[0]
            c.execute(
                on_demand.insert().values(site_id=site_id, name=name, domain=domain, created=now)
            )
            return Admission.ADDED, site_id

        try:
            with self._tx() as c:
                return work(c)
        except sa.exc.IntegrityError:
            return Admission.TAKEN, None  # a concurrent add took the name

    def count(self) -> int:
        """On-demand sites that are kept (not removed)."""
        query = (
            sa.select(sa.func.count())
            .select_from(on_demand.join(sites, sites.c.id == on_demand.c.site_id))
            .where(sites.c.desired == str(DesiredState.ACTIVE))
        )
        return int(self._scalar(query) or 0)

    def recent(self, limit: int = 20) -> list[OnDemandSite]:
        """The on-demand sites made last, newest first, with their state."""
        query = (
            sa.select(on_demand, sites.c.state)
            .select_from(on_demand.join(sites, sites.c.id == on_demand.c.site_id))
            .order_by(on_demand.c.created.desc())
            .limit(limit)
        )
        with self._tx() as c:
            return [
                OnDemandSite(r.site_id, r.name, r.domain, int(r.created), SiteState(r.state))
                for r in c.execute(query)
            ]

    def kept(self, limit: int | None = None) -> list[tuple[str, str]]:
        """(site id, the name it was made for) of every on-demand site kept, by id; with
        `limit`, of that many made last, newest first."""
        query = (
            sa.select(on_demand.c.site_id, on_demand.c.name)
            .select_from(on_demand.join(sites, sites.c.id == on_demand.c.site_id))
            .where(sites.c.desired == str(DesiredState.ACTIVE))
            .order_by(on_demand.c.site_id)
        )
        if limit is not None:
            query = (
                query.order_by(None)
                .order_by(on_demand.c.created.desc(), on_demand.c.site_id)
                .limit(limit)
            )
        with self._tx() as c:
            return [(str(i), str(n)) for i, n in c.execute(query)]

    def prune(self, now: int, retention: int, batch: int = 1000) -> Pruned:
        """Remove on-demand sites made before `now - retention` that never had a
        certificate and no worker holds, then delete the rows, made as long ago, of
        on-demand sites that are removed; at most `batch` of each."""
        cutoff = now - retention
        stale = (
            sa.select(on_demand.c.site_id)
            .select_from(on_demand.join(sites, sites.c.id == on_demand.c.site_id))
            .where(
                on_demand.c.created <= cutoff,
                sites.c.desired == str(DesiredState.ACTIVE),
                sites.c.current_version == 0,
                sa.or_(sites.c.lease_until.is_(None), sites.c.lease_until <= now),
            )
            .order_by(on_demand.c.created)
            .limit(batch)
        )
        kept = sa.exists().where(
            sites.c.id == on_demand.c.site_id, sites.c.desired == str(DesiredState.ACTIVE)
        )
        with self._tx() as c:
            given_up = 0
            for (site_id,) in c.execute(stale).all():
                done = c.execute(
                    sites.update()
                    .where(sites.c.id == site_id, sites.c.desired == str(DesiredState.ACTIVE))
                    .values(desired=DesiredState.REMOVED, next_action_at=now)
                )
                if done.rowcount == 1:  # a worker removes it from the edges next
                    name_index.free(c, site_id)
                    given_up += 1
            gone = (
                sa.select(on_demand.c.site_id)
                .where(on_demand.c.created <= cutoff, ~kept)
                .limit(batch)
                .scalar_subquery()
            )
            forgotten = c.execute(on_demand.delete().where(on_demand.c.site_id.in_(gone)))
        return Pruned(given_up, int(forgotten.rowcount))

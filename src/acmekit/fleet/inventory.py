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

A name belongs to at most one site that is not removed: `fleet_names` (name lower-cased
as its primary key, site id) gains a site's names in the transaction that adds the site
and loses them in the one that removes it, so of two processes adding the same name at
once the database lets one win. An add looks first (to name the holder in `NameTaken`),
then inserts; one that loses a race between the two looks again.

Orders in flight per CA are capped fleet-wide by `fleet_ca_slots`: a CA with a cap of
N has rows for slots 0..N-1, and an order holds one of them, leased until a time its
worker keeps moving forward. A slot is taken by one conditional UPDATE (free, or its
lease expired), its row picked with `FOR UPDATE SKIP LOCKED` on PostgreSQL so that
concurrent takers pick different rows; SQLite runs the statement under its one write
lock. The condition is checked again on the row being written, so two processes never
hold one slot; a killed worker's slots come free when their leases expire.

Order attempts are counted in `fleet_ca_stats`, one row per CA and hour (counts,
seconds summed, the slowest issued), by upserts (INSERT ... ON CONFLICT DO UPDATE,
which both databases have) that add a worker's counts to what is there, so what
separate workers did can be shown by any process without a row per attempt; rows
older than a week are deleted as new ones are written.

Times are integer microseconds since the epoch (UTC), as in the CA's store.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from acmekit import migrate
from acmekit.database import create_engine as create_engine
from acmekit.fleet.metrics import STATS_KEEP
from acmekit.fleet.model import (
    Added,
    BackupCert,
    CaHealth,
    CaSlot,
    CaStatsBucket,
    CertVersion,
    ChallengeMethod,
    Deployment,
    DesiredState,
    NameConflict,
    Site,
    SiteOptions,
    SiteState,
    name_key,
)
from acmekit.fleet.schema import (
    backups,
    ca_accounts,
    ca_health,
    ca_issuances,
    ca_slots,
    ca_stats,
    certificates,
    challenges,
    deployments,
    settings,
    site_names,
    sites,
)

_T = TypeVar("_T")

_ATTEMPTS = 3  # adds that lose a race for a name to a concurrent add look again
_IN_CHUNK = 500  # names per IN (...) when looking up holders: SQLite caps parameters


class NameTaken(Exception):
    """`name` already belongs to site `site_id`, which is not removed."""

    def __init__(self, name: str, site_id: str) -> None:
        super().__init__(f"{name} already belongs to site {site_id}")
        self.name = name
        self.site_id = site_id


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
        order_key_pem=row.order_key_pem,
    )


def _version(row: Any) -> CertVersion:
    return CertVersion(**row._mapping)  # the table's columns are the fields


def _new_row(names: Sequence[str], method: ChallengeMethod, now: int) -> dict[str, Any]:
    # A wildcard can only be proved over dns-01 (RFC 8555 §7.1.3): record what will happen.
    if any(name.startswith("*.") for name in names):
        method = ChallengeMethod.DNS_01
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


def _keys(names: Iterable[str]) -> list[str]:
    """A site's names as `fleet_names` keys, each once, in order."""
    return list(dict.fromkeys(name_key(n) for n in names))


def _holders(c: Connection, keys: Collection[str]) -> dict[str, str]:
    """Name key -> the site holding it, for those of `keys` that are taken."""
    wanted, found = list(keys), dict[str, str]()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        query = sa.select(site_names.c.name, site_names.c.site_id).where(
            site_names.c.name.in_(chunk)
        )
        found.update({str(n): str(s) for n, s in c.execute(query)})
    return found


def _add_batch(
    c: Connection, batch: Sequence[Sequence[str]], method: ChallengeMethod, now: int
) -> Added:
    """Insert the lines of `batch` whose names are all free (one statement per table)."""
    keys = [_keys(names) for names in batch]
    held = _holders(c, {k for line in keys for k in line})
    rows: list[dict[str, Any]] = []
    name_rows: list[dict[str, str]] = []
    conflicts: list[NameConflict] = []
    for line, (names, line_keys) in enumerate(zip(batch, keys, strict=True)):
        taken = next((k for k in line_keys if k in held), None)
        if taken is not None:
            conflicts.append(NameConflict(line, taken, held[taken]))
            continue
        row = _new_row(names, method, now)
        rows.append(row)
        for key in line_keys:
            held[key] = row["id"]
            name_rows.append({"name": key, "site_id": row["id"]})
    if rows:
        c.execute(sites.insert(), rows)
        c.execute(site_names.insert(), name_rows)
    return Added([r["id"] for r in rows], conflicts)


def _insert(c: Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say ON CONFLICT: both databases have it, and SQLAlchemy spells
    it per dialect."""
    if c.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _free_slot(now: int) -> sa.ColumnElement[bool]:
    return sa.or_(ca_slots.c.holder.is_(None), ca_slots.c.until <= now)


def _take_slot(ca: str, cap: int, holder: str, site_id: str, now: int, until: int) -> sa.Update:
    """The first free slot below `cap`, taken. The row is picked with SKIP LOCKED (on
    PostgreSQL) so that concurrent takers pick different ones, and the UPDATE checks it
    is free again on the row it writes: of two takers that picked the same row, the
    second updates nothing."""
    pick = (
        sa.select(ca_slots.c.slot)
        .where(ca_slots.c.ca == ca, ca_slots.c.slot < cap, _free_slot(now))
        .order_by(ca_slots.c.slot)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return (
        ca_slots.update()
        .where(ca_slots.c.ca == ca, ca_slots.c.slot == pick.scalar_subquery(), _free_slot(now))
        .values(holder=holder, site_id=site_id, until=until)
        .returning(ca_slots.c.slot)
    )


def _held(slot: CaSlot) -> sa.ColumnElement[bool]:
    return sa.and_(
        ca_slots.c.ca == slot.ca, ca_slots.c.slot == slot.number, ca_slots.c.holder == slot.holder
    )


def _add_bucket(c: Connection, bucket: CaStatsBucket) -> None:
    """Add `bucket`'s counts to the stored bucket of its CA and hour (made if new)."""
    insert = _insert(c, ca_stats).values(**bucket.__dict__)
    new = insert.excluded
    t = ca_stats.c
    c.execute(
        insert.on_conflict_do_update(
            index_elements=[t.ca, t.hour],
            set_={
                "issued": t.issued + new.issued,
                "failed": t.failed + new.failed,
                "issued_seconds": t.issued_seconds + new.issued_seconds,
                "failed_seconds": t.failed_seconds + new.failed_seconds,
                # CASE rather than max(): SQLite and PostgreSQL name the function apart
                "max_seconds": sa.case(
                    (new.max_seconds > t.max_seconds, new.max_seconds), else_=t.max_seconds
                ),
            },
        )
    )


class _Lost(Exception):
    """A compare-and-set found the row changed: roll the transaction back."""


def _store_version(c: Connection, owner: str, cert: CertVersion, renew_at: int) -> None:
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


def _holds(c: Connection, site_id: str, owner: str) -> bool:
    found = c.execute(
        sa.select(sites.c.id).where(sites.c.id == site_id, sites.c.lease_owner == owner)
    ).first()
    return found is not None


class Inventory:
    """Sites, certificate versions, deployments. Methods are short transactions and
    take `now` from the caller; none reads a clock."""

    def __init__(self, engine: Engine, auto_upgrade: bool = True) -> None:
        """Over `engine`, upgraded to this schema first (or, `auto_upgrade` off, refused
        with `SchemaOutOfDate` if it is not at it)."""
        self.engine = engine
        migrate.prepare(engine, migrate.FLEET, auto_upgrade)

    @classmethod
    def from_url(cls, url: str, auto_upgrade: bool = True) -> Inventory:
        return cls(create_engine(url), auto_upgrade)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _scalar(self, query: sa.Select[_T]) -> _T | None:
        """The one value `query` selects (None for no row), in a transaction of its own."""
        with self._tx() as c:
            return c.execute(query).scalar_one_or_none()

    def _committed(
        self,
        work: Callable[[Connection], object],
        lost: tuple[type[Exception], ...] = (_Lost,),
    ) -> bool:
        """`work` in a transaction: True if it committed, False if it raised one of
        `lost` (a compare-and-set that found the row changed, a row inserted first by
        another process), which rolls the whole transaction back."""
        try:
            with self._tx() as c:
                work(c)
        except lost:
            return False
        return True

    def _while_holding(
        self, site_id: str, owner: str, work: Callable[[Connection], object]
    ) -> bool:
        """`_committed(work)`, only while `owner` holds the lease of site `site_id`."""

        def guarded(c: Connection) -> None:
            if not _holds(c, site_id, owner):
                raise _Lost
            work(c)

        return self._committed(guarded)

    # sites ------------------------------------------------------------------------

    def add_site(self, names: Sequence[str], method: ChallengeMethod, now: int) -> Site:
        """A new pending site; NameTaken if a site not removed has one of `names`."""
        added = self._retrying(lambda c: _add_batch(c, [names], method, now))
        if added.conflicts:
            raise NameTaken(added.conflicts[0].name, added.conflicts[0].site_id)
        return self._must(added.ids[0])

    def add_sites(self, batch: Iterable[Sequence[str]], method: ChallengeMethod, now: int) -> Added:
        """Insert many sites in one transaction. A line with a name that a site not
        removed has, or that an earlier line has, is skipped and reported in
        `conflicts` (by its index in `batch`); the other lines are added."""
        lines = list(batch)
        if not lines:
            return Added([])
        return self._retrying(lambda c: _add_batch(c, lines, method, now))

    def _retrying(self, work: Callable[[Connection], _T]) -> _T:
        """`work` in a transaction; again if a concurrent add took a name meanwhile."""
        attempt = 1
        while True:
            try:
                with self._tx() as c:
                    return work(c)
            except sa.exc.IntegrityError:
                if attempt == _ATTEMPTS:
                    raise
                attempt += 1

    def holder(self, name: str) -> str | None:
        """The id of the site, not removed, that has `name` (case does not matter)."""
        with self._tx() as c:
            return _holders(c, [name_key(name)]).get(name_key(name))

    def _must(self, site_id: str) -> Site:
        found = self.site(site_id)
        assert found is not None
        return found

    def site(self, site_id: str) -> Site | None:
        with self._tx() as c:
            row = c.execute(sa.select(sites).where(sites.c.id == site_id)).first()
        return None if row is None else _site(row)

    def site_by_name(self, name: str) -> Site | None:
        """The site, not removed, whose first name is `name` (case does not matter)."""
        site_id = self.holder(name)
        found = None if site_id is None else self.site(site_id)
        if found is None or name_key(found.name) != name_key(name):
            return None
        return found

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
        """Stop renewing; a worker removes the site from the edges next. Its names are
        free for another site at once."""
        with self._tx() as c:
            res = c.execute(
                sites.update()
                .where(sites.c.id == site_id)
                .values(desired=DesiredState.REMOVED, next_action_at=now)
            )
            c.execute(site_names.delete().where(site_names.c.site_id == site_id))
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
        return self._scalar(sa.select(sa.func.min(sites.c.next_action_at)))

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
        return self._scalar(sa.select(sites.c.order_key_pem).where(sites.c.id == site_id))

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
        return self._committed(
            lambda c: _store_version(c, owner, cert, renew_at),
            lost=(_Lost, sa.exc.IntegrityError),
        )

    def promote_backup(self, owner: str, cert: CertVersion, renew_at: int) -> bool:
        """`store_version` of the site's backup (as `cert`), and the backup row gone."""

        def work(c: Connection) -> None:
            _store_version(c, owner, cert, renew_at)
            c.execute(backups.delete().where(backups.c.site_id == cert.site_id))

        return self._committed(work, lost=(_Lost, sa.exc.IntegrityError))

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
        self.record_deployments(site_id, [(edge, version, error)], now)

    def record_deployments(
        self, site_id: str, outcomes: Iterable[tuple[str, int, str | None]], now: int
    ) -> None:
        """`record_deployment` for several edges (edge, version, error) in one transaction."""
        with self._tx() as c:
            for edge, version, error in outcomes:
                _record_deployment(c, site_id, edge, version, now, error)

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
        return self._scalar(
            sa.select(challenges.c.key_authorization).where(challenges.c.token == token)
        )

    def setting(self, name: str) -> str | None:
        return self._scalar(sa.select(settings.c.value).where(settings.c.name == name))

    def setting_or_store(self, name: str, default: str) -> str:
        """The stored value of `name`, storing `default` first if there is none."""
        found = self.setting(name)
        if found is not None:
            return found
        self._insert_new(settings.insert().values(name=name, value=default))
        stored = self.setting(name)
        assert stored is not None
        return stored

    def set_setting(self, name: str, value: str) -> None:
        with self._tx() as c:
            c.execute(settings.delete().where(settings.c.name == name))
            c.execute(settings.insert().values(name=name, value=value))

    def _insert_new(self, insert: sa.Insert) -> None:
        """Insert a row unless another process inserted its key first (theirs stays)."""
        self._committed(lambda c: c.execute(insert), lost=(sa.exc.IntegrityError,))

    # site options ----------------------------------------------------------------------

    def options(self, site_id: str) -> SiteOptions:
        with self._tx() as c:
            row = c.execute(
                sa.select(
                    sites.c.backup, sites.c.order_ca, sites.c.next_check, sites.c.backup_retry_at
                ).where(sites.c.id == site_id)
            ).first()
        if row is None:
            return SiteOptions(site_id)
        return SiteOptions(
            site_id=site_id,
            backup=bool(row.backup),
            order_ca=row.order_ca,
            next_check=row.next_check,
            backup_retry_at=row.backup_retry_at,
        )

    def set_options(self, site_id: str, **values: Any) -> None:
        """Change a site's options (e.g. `backup=True`), whoever holds it."""
        with self._tx() as c:
            _set_options(c, site_id, values)

    def set_options_many(self, site_ids: Iterable[str], **values: Any) -> None:
        """`set_options` for many sites in one transaction."""
        with self._tx() as c:
            for site_id in site_ids:
                _set_options(c, site_id, values)

    def update_options_leased(self, site_id: str, owner: str, **values: Any) -> bool:
        """Change a site's options only while `owner` holds the site."""
        return self._while_holding(site_id, owner, lambda c: _set_options(c, site_id, values))

    # backups -------------------------------------------------------------------------------

    def backup(self, site_id: str) -> BackupCert | None:
        with self._tx() as c:
            row = c.execute(sa.select(backups).where(backups.c.site_id == site_id)).first()
        return None if row is None else BackupCert(**row._mapping)

    def store_backup(self, owner: str, backup: BackupCert) -> bool:
        """Replace the site's backup while `owner` holds the site."""

        def work(c: Connection) -> None:
            c.execute(backups.delete().where(backups.c.site_id == backup.site_id))
            c.execute(backups.insert().values(**backup.__dict__))

        return self._while_holding(backup.site_id, owner, work)

    # CA accounts and health ------------------------------------------------------------------

    def ca_account_key(self, ca: str, default_key_pem: str) -> str:
        """The account key for `ca`, storing `default_key_pem` first if there is none."""
        self._insert_new(ca_accounts.insert().values(ca=ca, key_pem=default_key_pem))
        with self._tx() as c:
            return str(
                c.execute(
                    sa.select(ca_accounts.c.key_pem).where(ca_accounts.c.ca == ca)
                ).scalar_one()
            )

    def ca_account_url(self, ca: str) -> str | None:
        return self._scalar(sa.select(ca_accounts.c.account_url).where(ca_accounts.c.ca == ca))

    def set_ca_account_url(self, ca: str, url: str) -> None:
        with self._tx() as c:
            c.execute(ca_accounts.update().where(ca_accounts.c.ca == ca).values(account_url=url))

    def ca_health(self, names: Iterable[str]) -> dict[str, CaHealth]:
        wanted = list(names)
        query = sa.select(ca_health).where(ca_health.c.ca.in_(wanted))
        with self._tx() as c:
            found = {
                r.ca: CaHealth(r.ca, r.failures, r.down_until, r.last_error)
                for r in c.execute(query)
            }
        return {n: found.get(n, CaHealth(n, 0, None, None)) for n in wanted}

    def _ensure_health(self, ca: str) -> None:
        self._insert_new(ca_health.insert().values(ca=ca, failures=0))

    def ca_failed(self, ca: str, error: str, down_until: Callable[[int], int | None]) -> int:
        """One more consecutive failure of `ca`; `down_until(failures)` says until when it
        is passed over. The new count of failures."""
        self._ensure_health(ca)
        with self._tx() as c:
            c.execute(
                ca_health.update()
                .where(ca_health.c.ca == ca)
                .values(failures=ca_health.c.failures + 1, last_error=error[:1000])
            )
            failures = int(
                c.execute(sa.select(ca_health.c.failures).where(ca_health.c.ca == ca)).scalar_one()
            )
            until = down_until(failures)
            if until is not None:
                c.execute(ca_health.update().where(ca_health.c.ca == ca).values(down_until=until))
        return failures

    def ca_succeeded(self, ca: str) -> None:
        with self._tx() as c:
            c.execute(
                ca_health.update()
                .where(ca_health.c.ca == ca, ca_health.c.failures != 0)
                .values(failures=0, down_until=None, last_error=None)
            )

    # each CA's certificates per registered domain ---------------------------------------------

    def ca_usage(
        self, ca: str, domains: Iterable[str], since: int, stale_before: int
    ) -> dict[str, list[int]]:
        """Times counted against `ca` per domain: certificates issued after `since`, and
        reservations of orders in flight made after `stale_before`."""
        wanted = list(domains)
        with self._tx() as c:
            return _usage(c, ca, wanted, since, stale_before)

    def reserve(
        self,
        ca: str,
        site_id: str,
        domains: Sequence[str],
        now: int,
        room: Callable[[dict[str, list[int]]], bool],
        window: tuple[int, int],
    ) -> bool:
        """Count one certificate for each of `domains` against `ca` for an order about to
        start, if `room(usage)` still says there is room. Serialized per CA: the first
        statement updates the CA's health row (a row lock on PostgreSQL, the write lock
        on SQLite), so two workers cannot both take the last slot. `window` is
        (since, stale_before) as for `ca_usage`."""
        self._ensure_health(ca)

        def work(c: Connection) -> None:
            c.execute(ca_health.update().where(ca_health.c.ca == ca).values(ca=ca))
            c.execute(_drop_reservations(ca, site_id))
            if not room(_usage(c, ca, list(domains), *window)):
                raise _Lost
            rows = [
                {"ca": ca, "domain": d, "site_id": site_id, "at": now, "final": False}
                for d in domains
            ]
            if rows:
                c.execute(ca_issuances.insert(), rows)

        return self._committed(work)

    def settle(self, ca: str, site_id: str, now: int, issued: bool) -> None:
        """The order the reservation was for ended: count it as issued at `now`, or not."""
        with self._tx() as c:
            if issued:
                c.execute(
                    ca_issuances.update()
                    .where(
                        ca_issuances.c.ca == ca,
                        ca_issuances.c.site_id == site_id,
                        ~ca_issuances.c.final,
                    )
                    .values(final=True, at=now)
                )
            else:
                c.execute(_drop_reservations(ca, site_id))

    def count_issued(self, ca: str, domain: str) -> int:
        """How many certificates the fleet counted against `ca` for `domain` (any time)."""
        with self._tx() as c:
            return int(
                c.execute(
                    sa.select(sa.func.count()).where(
                        ca_issuances.c.ca == ca,
                        ca_issuances.c.domain == domain,
                        ca_issuances.c.final,
                    )
                ).scalar_one()
            )

    # fleet-wide caps on orders in flight, per CA ---------------------------------------------

    def ensure_ca_slots(self, ca: str, cap: int) -> None:
        """Rows for slots 0 to `cap - 1` of `ca`; whichever process comes first makes them."""
        rows = [{"ca": ca, "slot": n} for n in range(cap)]
        if rows:
            with self._tx() as c:
                c.execute(_insert(c, ca_slots).values(rows).on_conflict_do_nothing())

    def take_ca_slot(
        self, ca: str, cap: int, holder: str, site_id: str, now: int, until: int
    ) -> CaSlot | None:
        """A free slot of `ca` below `cap` (one whose lease expired counts as free), held
        by `holder` until `until`; None when all are held. `ensure_ca_slots` first."""
        with self._tx() as c:
            number = c.execute(_take_slot(ca, cap, holder, site_id, now, until)).scalar()
        return None if number is None else CaSlot(ca, int(number), holder)

    def refresh_ca_slot(self, slot: CaSlot, until: int) -> bool:
        """Hold `slot` until `until`; False if it is no longer held by its holder."""
        with self._tx() as c:
            res = c.execute(ca_slots.update().where(_held(slot)).values(until=until))
        return bool(res.rowcount == 1)

    def release_ca_slot(self, slot: CaSlot) -> bool:
        """Free `slot` if its holder still holds it."""
        with self._tx() as c:
            res = c.execute(
                ca_slots.update().where(_held(slot)).values(holder=None, site_id=None, until=None)
            )
        return bool(res.rowcount == 1)

    def ca_slots_held(self, ca: str, now: int) -> dict[int, str]:
        """Slot number -> holder, for the slots of `ca` held at `now`."""
        query = sa.select(ca_slots.c.slot, ca_slots.c.holder).where(
            ca_slots.c.ca == ca, ~_free_slot(now)
        )
        with self._tx() as c:
            return {int(n): str(h) for n, h in c.execute(query)}

    # each CA's order attempts by the hour, fleet-wide ---------------------------------------

    def add_ca_stats(self, buckets: Iterable[CaStatsBucket]) -> None:
        """Add the counts of `buckets` (each a CA's attempts in an hour) to the stored
        ones, in one transaction, and delete every bucket a week older (a CA no longer
        used included)."""
        # In one order in every worker, so that two writing the same buckets at once on
        # PostgreSQL wait for each other rather than deadlock.
        found = sorted(buckets, key=lambda b: (b.ca, b.hour))
        if not found:
            return
        oldest = max(b.hour for b in found) - STATS_KEEP
        with self._tx() as c:
            for bucket in found:
                _add_bucket(c, bucket)
            c.execute(ca_stats.delete().where(ca_stats.c.hour < oldest))

    def ca_stats(self, since: int) -> list[CaStatsBucket]:
        """Every CA's buckets that start at `since` or later, by CA and hour."""
        query = (
            sa.select(ca_stats)
            .where(ca_stats.c.hour >= since)
            .order_by(ca_stats.c.ca, ca_stats.c.hour)
        )
        with self._tx() as c:
            return [CaStatsBucket(**r._mapping) for r in c.execute(query)]


def _record_deployment(
    c: Connection, site_id: str, edge: str, version: int, now: int, error: str | None
) -> None:
    """An update that needs no read first (the count is incremented in SQL); the row is
    inserted the first time. Only the site's lease holder deploys it, so two inserts
    for one (site, edge) do not race."""
    values: dict[str, Any] = {"updated": now, "last_error": error}
    if error is None:
        values.update(version=version, failure_count=0)
    else:
        values["failure_count"] = deployments.c.failure_count + 1
    res = c.execute(
        deployments.update()
        .where(deployments.c.site_id == site_id, deployments.c.edge == edge)
        .values(**values)
    )
    if res.rowcount == 0:
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


def _set_options(c: Connection, site_id: str, values: dict[str, Any]) -> None:
    c.execute(sites.update().where(sites.c.id == site_id).values(**values))


def _drop_reservations(ca: str, site_id: str) -> sa.Delete:
    return ca_issuances.delete().where(
        ca_issuances.c.ca == ca, ca_issuances.c.site_id == site_id, ~ca_issuances.c.final
    )


def _usage(
    c: Connection, ca: str, domains: list[str], since: int, stale_before: int
) -> dict[str, list[int]]:
    counted = sa.or_(
        sa.and_(ca_issuances.c.final, ca_issuances.c.at > since),
        sa.and_(~ca_issuances.c.final, ca_issuances.c.at > stale_before),
    )
    query = sa.select(ca_issuances.c.domain, ca_issuances.c.at).where(
        ca_issuances.c.ca == ca, ca_issuances.c.domain.in_(domains), counted
    )
    usage: dict[str, list[int]] = {d: [] for d in domains}
    for domain, at in c.execute(query):
        usage[domain].append(int(at))
    return usage

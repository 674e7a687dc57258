"""Sites and their certificate versions, deployments, leases, options and backups.

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
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from acmekit.fleet.delegation import delegation_label
from acmekit.fleet.model import (
    Added,
    BackupCert,
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
from acmekit.fleet.repos import names as name_index
from acmekit.fleet.repos.base import KEEP, Keep, Lost, Repository, changed
from acmekit.fleet.repos.names import NameRepository, NameTaken
from acmekit.fleet.schema import backups, certificates, deployments, sites

_T = TypeVar("_T")

_ATTEMPTS = 3  # adds that lose a race for a name to a concurrent add look again


@dataclass(frozen=True)
class SiteChange:
    """What a step of the lease holder sets on its site; fields left at `KEEP` stay."""

    state: SiteState | Keep = KEEP
    renew_at: int | Keep | None = KEEP
    failure_count: int | Keep = KEEP
    last_problem: dict[str, Any] | Keep | None = KEEP  # an RFC 7807 problem, or a note
    order_url: str | Keep | None = KEEP
    order_key_pem: str | Keep | None = KEEP


@dataclass(frozen=True)
class OptionsChange:
    """What a change of a site's options (`SiteOptions`) sets; fields left at `KEEP`
    stay."""

    backup: bool | Keep = KEEP
    order_ca: str | Keep | None = KEEP
    next_check: int | Keep | None = KEEP
    backup_retry_at: int | Keep | None = KEEP


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
    wildcard = any(name.startswith("*.") for name in names)
    # The two draft methods validate wildcards too (dns-persist-01 with policy=wildcard,
    # dns-account-01 as dns-01 does).
    drafts = (ChallengeMethod.DNS_PERSIST_01, ChallengeMethod.DNS_ACCOUNT_01)
    if wildcard and method not in drafts:
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


def _delegated(names: Sequence[str], method: ChallengeMethod) -> bool:
    """Whether a site of `names` added with `method` is validated through a CNAME to
    a target `delegation_target` names (dns-01, wildcards, dns-account-01)."""
    wildcard = any(name.startswith("*.") for name in names)
    delegating = (ChallengeMethod.DNS_01, ChallengeMethod.DNS_ACCOUNT_01)
    return method in delegating or (wildcard and method != ChallengeMethod.DNS_PERSIST_01)


def _twin(
    line_keys: Sequence[str], by_label: dict[str, list[tuple[str, str]]]
) -> tuple[str, str] | None:
    """A name held (by a site, or an earlier line of the batch) that shares its
    delegation target with one of `line_keys` but is another name, and its holder.
    A newcomer whose target is another customer's could make that customer's dns-01
    fail, so it is refused: existing targets never change."""
    for key in line_keys:
        label, base = delegation_label(key), key.removeprefix("*.")
        for twin, holder in by_label.get(label, []) if label is not None else []:
            if twin.removeprefix("*.") != base:
                return twin, holder
    return None


def _learn(by_label: dict[str, list[tuple[str, str]]], key: str, holder: str) -> None:
    label = delegation_label(key)
    if label is not None:
        by_label.setdefault(label, []).append((key, holder))


def _add_batch(
    c: Connection, batch: Sequence[Sequence[str]], method: ChallengeMethod, now: int
) -> Added:
    """Insert the lines of `batch` whose names are all free (one statement per table)."""
    keys = [name_index.keys(names) for names in batch]
    held = name_index.holders(c, {k for line in keys for k in line})
    delegated = [_delegated(names, method) for names in batch]
    wanted = {k for line, d in zip(keys, delegated, strict=True) if d for k in line}
    by_label: dict[str, list[tuple[str, str]]] = {}
    for other, holder in (name_index.twin_holders(c, wanted) if wanted else {}).items():
        _learn(by_label, other, holder)
    rows: list[dict[str, Any]] = []
    name_rows: list[dict[str, str]] = []
    conflicts: list[NameConflict] = []
    for line, (names, line_keys) in enumerate(zip(batch, keys, strict=True)):
        taken = next((k for k in line_keys if k in held), None)
        if taken is not None:
            conflicts.append(NameConflict(line, taken, held[taken]))
            continue
        twin = _twin(line_keys, by_label) if delegated[line] else None
        if twin is not None:
            conflicts.append(NameConflict(line, *twin))
            continue
        row = _new_row(names, method, now)
        rows.append(row)
        for key in line_keys:
            held[key] = row["id"]
            _learn(by_label, key, row["id"])
            name_rows.append({"name": key, "site_id": row["id"]})
    if rows:
        c.execute(sites.insert(), rows)
        name_index.claim(c, name_rows)
    return Added([r["id"] for r in rows], conflicts)


def _version_update(columns: tuple[str, ...]) -> sa.Update:
    """The UPDATE that makes a version current (see `_store_version`), with the option
    `columns` too (bound as `v_NAME`); built once per set of columns."""
    found = _VERSION_UPDATES.get(columns)
    if found is not None:
        return found
    found = (
        sites.update()
        .where(
            sites.c.id == sa.bindparam("p_site"),
            sites.c.lease_owner == sa.bindparam("p_owner"),
            sites.c.current_version == sa.bindparam("p_previous"),
        )
        .values(
            current_version=sa.bindparam("p_version"),
            renew_at=sa.bindparam("p_renew_at", type_=sa.BigInteger),
            # not active yet: `active` means on every edge, which the worker says after
            # deploying (worker._settled_state)
            state=str(SiteState.ISSUING),
            failure_count=0,
            last_problem=None,
            order_url=None,
            order_key_pem=None,
            **{c: sa.bindparam(f"v_{c}", type_=sites.c[c].type) for c in columns},
        )
    )
    _VERSION_UPDATES[columns] = found
    return found


_VERSION_UPDATES: dict[tuple[str, ...], sa.Update] = {}


def _store_version(
    c: Connection,
    owner: str,
    cert: CertVersion,
    renew_at: int,
    options: OptionsChange | None = None,
) -> None:
    extra = {} if options is None else changed(options)
    params = {f"v_{k}": v for k, v in extra.items()}
    params.update(
        p_site=cert.site_id,
        p_owner=owner,
        p_previous=cert.version - 1,
        p_version=cert.version,
        p_renew_at=renew_at,
    )
    res = c.execute(_version_update(tuple(sorted(extra))), params)
    if res.rowcount != 1:
        raise Lost
    c.execute(certificates.insert(), cert.__dict__)  # parameters, no statement to build


def _deployment_upsert(dialect: str, failed: bool) -> sa.Insert:
    """The upsert `_record_deployment` sends, with bound parameters: built once per
    dialect and outcome (building a statement costs more CPU than sending it)."""
    key = (dialect, failed)
    found = _DEPLOYMENT_UPSERTS.get(key)
    if found is not None:
        return found
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(deployments)
    insert = insert.values(
        site_id=sa.bindparam("p_site"),
        edge=sa.bindparam("p_edge"),
        version=sa.bindparam("p_first_version"),
        updated=sa.bindparam("p_now"),
        failure_count=sa.bindparam("p_first_failures"),
        last_error=sa.bindparam("p_error"),
    )
    new = insert.excluded
    values: dict[str, Any] = {"updated": new.updated, "last_error": new.last_error}
    if failed:
        values["failure_count"] = deployments.c.failure_count + 1
    else:
        values.update(version=new.version, failure_count=0)
    found = insert.on_conflict_do_update(
        index_elements=[deployments.c.site_id, deployments.c.edge], set_=values
    )
    _DEPLOYMENT_UPSERTS[key] = found
    return found


_DEPLOYMENT_UPSERTS: dict[tuple[str, bool], sa.Insert] = {}


def _record_deployment(
    c: Connection, site_id: str, edge: str, version: int, now: int, error: str | None
) -> None:
    """One upsert, which needs no read first (the count is incremented in SQL)."""
    failed = error is not None
    c.execute(
        _deployment_upsert(c.dialect.name, failed),
        {
            "p_site": site_id,
            "p_edge": edge,
            "p_first_version": 0 if failed else version,
            "p_now": now,
            "p_first_failures": 1 if failed else 0,
            "p_error": error,
        },
    )


def _leased_update(columns: tuple[str, ...], release: bool) -> sa.Update:
    """UPDATE of `columns` (bound as `v_NAME`) of the site `p_site` while `p_owner`
    holds it; with `release`, also the end of the lease (`p_now`, `p_next`: see
    `SiteRepository.release`). Built once per set of columns."""
    key = (columns, release)
    found = _LEASED_UPDATES.get(key)
    if found is not None:
        return found
    values: dict[str, Any] = {c: sa.bindparam(f"v_{c}", type_=sites.c[c].type) for c in columns}
    if release:
        removed = sites.c.desired == str(DesiredState.REMOVED)
        state_removed = sites.c.state == str(SiteState.REMOVED)
        # Leasing set next_action_at to lease_until and the holder never moves it: if it
        # moved, the API asked for a renewal (or a removal) meanwhile, which is due now.
        asked = sites.c.next_action_at < sites.c.lease_until
        now = sa.bindparam("p_now", type_=sa.BigInteger)
        values.update(
            lease_owner=None,
            lease_until=None,
            next_action_at=sa.case(
                (sa.and_(removed, ~state_removed), now),
                (asked, now),
                else_=sa.bindparam("p_next", type_=sa.BigInteger),
            ),
        )
    found = (
        sites.update()
        .where(
            sites.c.id == sa.bindparam("p_site", type_=sites.c.id.type),
            sites.c.lease_owner == sa.bindparam("p_owner", type_=sites.c.lease_owner.type),
        )
        .values(values)
    )
    _LEASED_UPDATES[key] = found
    return found


_LEASED_UPDATES: dict[tuple[tuple[str, ...], bool], sa.Update] = {}


def _leased_params(site_id: str, owner: str, values: dict[str, Any]) -> dict[str, Any]:
    params = {f"v_{c}": v for c, v in values.items()}
    params.update(p_site=site_id, p_owner=owner)
    return params


def _values(change: SiteChange | None, options: OptionsChange | None = None) -> dict[str, Any]:
    """The columns `change` and `options` set (a site's options are columns of its row)."""
    values = {} if change is None else changed(change)
    if isinstance(values.get("last_problem"), dict):
        values["last_problem"] = json.dumps(values["last_problem"])
    if options is not None:
        values.update(changed(options))
    return values


def _set_options(c: Connection, site_id: str, change: OptionsChange) -> None:
    c.execute(sites.update().where(sites.c.id == site_id).values(**changed(change)))


@dataclass(frozen=True)
class SiteDetails:
    """A site's current and backup certificates, options and deployments by edge."""

    current: CertVersion | None
    backup: BackupCert | None
    options: SiteOptions
    deployments: dict[str, Deployment]


class SiteRepository(Repository):
    """Sites, certificate versions, deployments."""

    def __init__(self, engine: Engine, names: NameRepository) -> None:
        super().__init__(engine)
        self.names = names

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
        site_id = self.names.holder(name)
        found = None if site_id is None else self.site(site_id)
        if found is None or name_key(found.name) != name_key(name):
            return None
        return found

    def page(self, state: SiteState | None = None, after: str = "", limit: int = 100) -> list[Site]:
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

    def soonest_expiring(self, limit: int) -> list[tuple[str, str, int, int | None]]:
        """(id, first name, current certificate's notAfter, renewal time) of the `limit`
        kept (not removed) sites whose current certificate expires first (then by id):
        one statement, however many sites there are."""
        current = sa.and_(
            certificates.c.site_id == sites.c.id,
            certificates.c.version == sites.c.current_version,
        )
        query = (
            sa.select(sites.c.id, sites.c.primary_name, certificates.c.not_after, sites.c.renew_at)
            .select_from(sites.join(certificates, current))
            .where(sites.c.desired == str(DesiredState.ACTIVE))
            .order_by(certificates.c.not_after, sites.c.id)
            .limit(limit)
        )
        with self._tx() as c:
            return [(r.id, r.primary_name, int(r.not_after), r.renew_at) for r in c.execute(query)]

    def certificates_by_ca(
        self, now: int, horizons: Sequence[int]
    ) -> list[tuple[str, int, int, tuple[int, ...]]]:
        """Per CA, in name order, over kept sites' current certificates: (CA, how many,
        the earliest notAfter, how many expire by `now + h` for each of `horizons`),
        counted by the database in one statement."""
        current = sa.and_(
            certificates.c.site_id == sites.c.id,
            certificates.c.version == sites.c.current_version,
        )
        within = [
            sa.func.sum(sa.case((certificates.c.not_after <= now + h, 1), else_=0))
            for h in horizons
        ]
        query = (
            sa.select(
                certificates.c.ca, sa.func.count(), sa.func.min(certificates.c.not_after), *within
            )
            .select_from(sites.join(certificates, current))
            .where(sites.c.desired == str(DesiredState.ACTIVE))
            .group_by(certificates.c.ca)
            .order_by(certificates.c.ca)
        )
        with self._tx() as c:
            return [
                (str(r[0]), int(r[1]), int(r[2]), tuple(int(n or 0) for n in r[3:]))
                for r in c.execute(query)
            ]

    def current_chains(self) -> list[tuple[str, str, str, str]]:
        """(id, first name, serial, fullchain PEM) of every site kept (not removed) that
        has a certificate, in id order: what CT compliance is judged on."""
        current = sa.and_(
            certificates.c.site_id == sites.c.id,
            certificates.c.version == sites.c.current_version,
        )
        query = (
            sa.select(
                sites.c.id,
                sites.c.primary_name,
                certificates.c.serial,
                certificates.c.fullchain_pem,
            )
            .select_from(sites.join(certificates, current))
            .where(sites.c.desired == str(DesiredState.ACTIVE))
            .order_by(sites.c.id)
        )
        with self._tx() as c:
            return [(r.id, r.primary_name, r.serial, r.fullchain_pem) for r in c.execute(query)]

    def renewal_due_count(self, now: int) -> int:
        """Sites kept (not removed) whose certificate is due for renewal at `now`."""
        query = sa.select(sa.func.count()).where(
            sites.c.desired == str(DesiredState.ACTIVE),
            sites.c.current_version > 0,
            sites.c.renew_at <= now,
        )
        return int(self._scalar(query) or 0)

    def remove_site(self, site_id: str, now: int) -> bool:
        """Stop renewing; a worker removes the site from the edges next. Its names are
        free for another site at once."""
        with self._tx() as c:
            res = c.execute(
                sites.update()
                .where(sites.c.id == site_id)
                .values(desired=DesiredState.REMOVED, next_action_at=now)
            )
            name_index.free(c, site_id)
        return bool(res.rowcount == 1)

    def force_renewal(self, site_id: str, now: int) -> bool:
        with self._tx() as c:
            res = c.execute(
                sites.update()
                .where(sites.c.id == site_id, sites.c.desired == DesiredState.ACTIVE)
                .values(renew_at=now, next_action_at=now)
            )
        return bool(res.rowcount == 1)

    def lease_due(self, owner: str, now: int, lease: int, limit: int) -> list[Site]:
        """Take up to `limit` due sites for `owner` until `now + lease`. A site another
        worker holds is not due before its lease ends, even if the API made it due
        meanwhile (`force_renewal`, `remove_site`): its holder's release makes it due
        then. Taken at once, it would get a second order, or be removed from the edges
        while its holder is still deploying to them."""
        free = sa.or_(sites.c.lease_until.is_(None), sites.c.lease_until <= now)
        due = (
            sa.select(sites.c.id)
            .where(sites.c.next_action_at <= now, free)
            .order_by(sites.c.next_action_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        until = now + lease
        stmt = (
            sites.update()
            .where(sites.c.id.in_(due.scalar_subquery()), sites.c.next_action_at <= now, free)
            .values(lease_owner=owner, lease_until=until, next_action_at=until)
            .returning(*sites.c)
        )
        with self._tx() as c:
            return [_site(r) for r in c.execute(stmt)]

    def next_due(self) -> int | None:
        """The earliest `next_action_at` of any site (None when nothing is planned)."""
        return self._scalar(sa.select(sa.func.min(sites.c.next_action_at)))

    def update_leased(
        self,
        site_id: str,
        owner: str,
        change: SiteChange,
        options: OptionsChange | None = None,
    ) -> bool:
        """Apply `change` (and `options`) to the site only while `owner` holds it
        (compare-and-set), in one statement."""
        return self._update_leased(site_id, owner, _values(change, options))

    def defer(self, site_id: str, owner: str, next_action_at: int, failure_count: int) -> bool:
        """End the lease after a failed step: the site comes due again at
        `next_action_at`, its consecutive failures now `failure_count`."""
        return self._update_leased(
            site_id,
            owner,
            {
                "failure_count": failure_count,
                "lease_owner": None,
                "lease_until": None,
                "next_action_at": next_action_at,
            },
        )

    def mark_removed(self, site_id: str, owner: str) -> bool:
        """The site is off every edge: end the lease, and plan nothing more for it."""
        return self._update_leased(
            site_id,
            owner,
            {
                "state": SiteState.REMOVED,
                "lease_owner": None,
                "lease_until": None,
                "next_action_at": None,
                "order_url": None,
                "order_key_pem": None,
            },
        )

    def _update_leased(self, site_id: str, owner: str, values: dict[str, Any]) -> bool:
        """Change the site only while `owner` holds it (compare-and-set)."""
        if not values:
            return (
                self._scalar(
                    sa.select(sites.c.id).where(sites.c.id == site_id, sites.c.lease_owner == owner)
                )
                is not None
            )
        with self._tx() as c:
            res = c.execute(
                _leased_update(tuple(sorted(values)), release=False),
                _leased_params(site_id, owner, values),
            )
        return bool(res.rowcount == 1)

    def order_key(self, site_id: str) -> str | None:
        return self._scalar(sa.select(sites.c.order_key_pem).where(sites.c.id == site_id))

    def release(
        self,
        site_id: str,
        owner: str,
        next_action_at: int | None,
        now: int,
        change: SiteChange | None = None,
        options: OptionsChange | None = None,
        deployed: Iterable[tuple[str, int, str | None]] = (),
    ) -> bool:
        """End the lease, setting `change` and `options` in the same statement, and
        recording `deployed` (as `record_deployments`) in the same transaction. A site
        removed meanwhile comes due at once instead."""
        values = _values(change, options)
        for ended in ("lease_owner", "lease_until", "next_action_at"):
            values.pop(ended, None)
        params = _leased_params(site_id, owner, values)
        params.update(p_now=now, p_next=next_action_at)
        with self._tx() as c:
            for edge, version, error in deployed:
                _record_deployment(c, site_id, edge, version, now, error)
            res = c.execute(_leased_update(tuple(sorted(values)), release=True), params)
        return bool(res.rowcount == 1)

    def store_version(
        self, owner: str, cert: CertVersion, renew_at: int, options: OptionsChange | None = None
    ) -> bool:
        """Make `cert` the site's current certificate if its current version is still
        `cert.version - 1` and `owner` still holds the lease, setting `options` in the
        same statement; False otherwise."""
        return self._committed(
            lambda c: _store_version(c, owner, cert, renew_at, options),
            lost=(Lost, sa.exc.IntegrityError),
        )

    def promote_backup(self, owner: str, cert: CertVersion, renew_at: int) -> bool:
        """`store_version` of the site's backup (as `cert`), and the backup row gone."""

        def work(c: Connection) -> None:
            _store_version(c, owner, cert, renew_at)
            c.execute(backups.delete().where(backups.c.site_id == cert.site_id))

        return self._committed(work, lost=(Lost, sa.exc.IntegrityError))

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

    def details(self, page: Sequence[Site]) -> dict[str, SiteDetails]:
        """What the API shows of each site in `page` beyond its row, by site id: four
        statements in one transaction, however long the page (`GET /domains`)."""
        ids = [s.id for s in page]
        if not ids:
            return {}
        current = sa.and_(
            certificates.c.site_id == sites.c.id,
            certificates.c.version == sites.c.current_version,
        )
        with self._tx() as c:
            options = {
                r.id: SiteOptions(r.id, bool(r.backup), r.order_ca, r.next_check, r.backup_retry_at)
                for r in c.execute(
                    sa.select(
                        sites.c.id, sites.c.backup, sites.c.order_ca, sites.c.next_check,
                        sites.c.backup_retry_at,
                    ).where(sites.c.id.in_(ids))
                )
            }  # fmt: skip
            certs = {
                r.site_id: _version(r)
                for r in c.execute(
                    sa.select(certificates)
                    .select_from(certificates.join(sites, current))
                    .where(sites.c.id.in_(ids))
                )
            }
            kept = {
                r.site_id: BackupCert(**r._mapping)
                for r in c.execute(sa.select(backups).where(backups.c.site_id.in_(ids)))
            }
            deployed: dict[str, dict[str, Deployment]] = {i: {} for i in ids}
            for r in c.execute(sa.select(deployments).where(deployments.c.site_id.in_(ids))):
                deployed[r.site_id][r.edge] = Deployment(**r._mapping)
        return {
            i: SiteDetails(certs.get(i), kept.get(i), options.get(i, SiteOptions(i)), deployed[i])
            for i in ids
        }

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

    def set_options(self, site_id: str, change: OptionsChange) -> None:
        """Change a site's options (e.g. `OptionsChange(backup=True)`), whoever holds it."""
        with self._tx() as c:
            _set_options(c, site_id, change)

    def set_options_many(self, site_ids: Iterable[str], change: OptionsChange) -> None:
        """`set_options` for many sites in one transaction."""
        with self._tx() as c:
            for site_id in site_ids:
                _set_options(c, site_id, change)

    def update_options_leased(self, site_id: str, owner: str, change: OptionsChange) -> bool:
        """Change a site's options only while `owner` holds the site (one conditional
        UPDATE: the options are columns of the site's row)."""
        return self._update_leased(site_id, owner, changed(change))

    def replan_leased(
        self, site_id: str, owner: str, read: int | None, renew_at: int, change: OptionsChange
    ) -> bool:
        """Move the renewal time from `read` (the holder's) to `renew_at`, and change
        the options, only while `owner` holds the site. A renewal time the API set
        meanwhile ("renew now", `force_renewal`) is kept: the holder's plan was made
        without it."""
        unchanged = sites.c.renew_at.is_(None) if read is None else sites.c.renew_at == read
        with self._tx() as c:
            res = c.execute(
                sites.update()
                .where(sites.c.id == site_id, sites.c.lease_owner == owner)
                .values(
                    renew_at=sa.case((unchanged, renew_at), else_=sites.c.renew_at),
                    **changed(change),
                )
            )
        return bool(res.rowcount == 1)

    def redeploy(self, site_id: str, now: int) -> None:
        """Every edge is to get the current version again (what it has is not known),
        from a turn due now: at once, or, if a worker holds the site, at its release
        (`release` reads an earlier `next_action_at` as asked for)."""
        with self._tx() as c:
            c.execute(
                deployments.update().where(deployments.c.site_id == site_id).values(version=0)
            )
            c.execute(
                sites.update()
                .where(sites.c.id == site_id, sites.c.desired == str(DesiredState.ACTIVE))
                .values(next_action_at=now)
            )

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

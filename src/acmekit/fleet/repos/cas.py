"""What the fleet keeps per CA: its account, its health, the certificates counted
against it per registered domain, fleet-wide caps on orders in flight, and figures.

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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from acmekit.fleet.metrics import STATS_KEEP
from acmekit.fleet.model import CaHealth, CaSlot, CaStatsBucket
from acmekit.fleet.repos.base import Lost, Repository, conflict_insert
from acmekit.fleet.schema import ca_accounts, ca_health, ca_issuances, ca_slots, ca_stats


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


# Built once with bound parameters: building a statement costs more CPU than sending it.
_TAKE_SLOT = _take_slot(
    sa.bindparam("p_ca", type_=ca_slots.c.ca.type),  # type: ignore[arg-type]
    sa.bindparam("p_cap", type_=sa.Integer),  # type: ignore[arg-type]
    sa.bindparam("p_holder", type_=ca_slots.c.holder.type),  # type: ignore[arg-type]
    sa.bindparam("p_site", type_=ca_slots.c.site_id.type),  # type: ignore[arg-type]
    sa.bindparam("p_now", type_=sa.BigInteger),  # type: ignore[arg-type]
    sa.bindparam("p_until", type_=sa.BigInteger),  # type: ignore[arg-type]
)
_RELEASE_SLOT = (
    ca_slots.update()
    .where(
        ca_slots.c.ca == sa.bindparam("p_ca"),
        ca_slots.c.slot == sa.bindparam("p_slot"),
        ca_slots.c.holder == sa.bindparam("p_holder"),
    )
    .values(holder=None, site_id=None, until=None)
)


def _held(slot: CaSlot) -> sa.ColumnElement[bool]:
    return sa.and_(
        ca_slots.c.ca == slot.ca, ca_slots.c.slot == slot.number, ca_slots.c.holder == slot.holder
    )


def _add_bucket(c: Connection, bucket: CaStatsBucket) -> None:
    """Add `bucket`'s counts to the stored bucket of its CA and hour (made if new)."""
    insert = conflict_insert(c, ca_stats).values(**bucket.__dict__)
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


# Statements of every order, built once with bound parameters (`p_ca`, `p_site`,
# `p_now`): building a statement costs more CPU than sending it.
_RESET_HEALTH = (
    ca_health.update()
    .where(ca_health.c.ca == sa.bindparam("p_ca"), ca_health.c.failures != 0)
    .values(failures=0, down_until=None, last_error=None)
)
# The CA's health row written (to itself): the lock that serializes reservations.
_LOCK_CA = (
    ca_health.update()
    .where(ca_health.c.ca == sa.bindparam("p_ca"))
    .values(ca=sa.bindparam("p_lock_ca"))
)
_RESERVED = sa.and_(
    ca_issuances.c.ca == sa.bindparam("p_ca"),
    ca_issuances.c.site_id == sa.bindparam("p_site"),
    ~ca_issuances.c.final,
)
_DROP_RESERVATIONS = ca_issuances.delete().where(_RESERVED)
_FINAL = ca_issuances.update().where(_RESERVED).values(final=True, at=sa.bindparam("p_now"))


def _reset_health(c: Connection, ca: str) -> None:
    """The CA answered: its run of failures is over."""
    c.execute(_RESET_HEALTH, {"p_ca": ca})


def _drop_reservations(c: Connection, ca: str, site_id: str) -> None:
    c.execute(_DROP_RESERVATIONS, {"p_ca": ca, "p_site": site_id})


def _health(c: Connection, wanted: list[str]) -> dict[str, CaHealth]:
    """The health of each of `wanted`: a CA with no row yet has never failed."""
    query = sa.select(ca_health).where(ca_health.c.ca.in_(wanted))
    found = {r.ca: CaHealth(r.ca, r.failures, r.down_until, r.last_error) for r in c.execute(query)}
    return {n: found.get(n, CaHealth(n, 0, None, None)) for n in wanted}


def _usage(
    c: Connection,
    ca: str,
    domains: list[str],
    since: int,
    stale_before: int,
    latest: int | None = None,
) -> dict[str, list[int]]:
    """Times counted per domain (see `CaRepository.usage`); with `latest`, only that many
    of the most recent per domain, each read backwards along the (ca, domain, at)
    index, so the cost does not grow with the certificates already counted."""
    counted = sa.or_(
        sa.and_(ca_issuances.c.final, ca_issuances.c.at > since),
        sa.and_(~ca_issuances.c.final, ca_issuances.c.at > stale_before),
    )
    usage: dict[str, list[int]] = {d: [] for d in domains}
    if not domains:
        return usage
    query: sa.Select[Any] | sa.CompoundSelect[Any]
    if latest is None:
        query = sa.select(ca_issuances.c.domain, ca_issuances.c.at).where(
            ca_issuances.c.ca == ca, ca_issuances.c.domain.in_(domains), counted
        )
    else:
        parts = [
            sa.select(ca_issuances.c.domain, ca_issuances.c.at)
            .where(ca_issuances.c.ca == ca, ca_issuances.c.domain == domain, counted)
            .order_by(ca_issuances.c.at.desc())
            .limit(latest)
            .subquery()
            for domain in domains
        ]
        selects = [sa.select(part.c.domain, part.c.at) for part in parts]
        query = selects[0] if len(selects) == 1 else sa.union_all(*selects)
    for domain, at in c.execute(query):
        usage[domain].append(int(at))
    return usage


class CaRepository(Repository):
    """CA accounts, health, issuance counts and reservations, slots, figures."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._has_health: set[str] = set()  # CAs whose health row is known to exist

    def account_key(self, ca: str, default_key_pem: str) -> str:
        """The account key for `ca`, storing `default_key_pem` first if there is none."""
        self._insert_new(ca_accounts.insert().values(ca=ca, key_pem=default_key_pem))
        with self._tx() as c:
            return str(
                c.execute(
                    sa.select(ca_accounts.c.key_pem).where(ca_accounts.c.ca == ca)
                ).scalar_one()
            )

    def account_url(self, ca: str) -> str | None:
        return self._scalar(sa.select(ca_accounts.c.account_url).where(ca_accounts.c.ca == ca))

    def account_urls(self) -> dict[str, str]:
        """Every CA's account URL the fleet has registered, by CA name."""
        query = sa.select(ca_accounts.c.ca, ca_accounts.c.account_url).where(
            ca_accounts.c.account_url.is_not(None)
        )
        with self._tx() as c:
            return {row.ca: row.account_url for row in c.execute(query.order_by(ca_accounts.c.ca))}

    def set_account_url(self, ca: str, url: str) -> None:
        with self._tx() as c:
            c.execute(ca_accounts.update().where(ca_accounts.c.ca == ca).values(account_url=url))

    def health(self, names: Iterable[str]) -> dict[str, CaHealth]:
        with self._tx() as c:
            return _health(c, list(names))

    def standing(
        self, names: Iterable[str], usage: dict[str, tuple[Sequence[str], int, int, int | None]]
    ) -> tuple[dict[str, CaHealth], dict[str, dict[str, list[int]]]]:
        """`health(names)`, and `usage(ca, *args)` for each `ca: args` of `usage`, read in
        one transaction."""
        with self._tx() as c:
            health = _health(c, list(names))
            counted = {
                ca: _usage(c, ca, list(domains), since, stale, latest)
                for ca, (domains, since, stale, latest) in usage.items()
            }
        return health, counted

    def _ensure_health(self, ca: str) -> None:
        """The CA's health row, made if missing; asked once per process (rows are never
        deleted), so the statements that lock it do not pay a round trip each."""
        if ca in self._has_health:
            return
        with self._tx() as c:
            c.execute(
                conflict_insert(c, ca_health).values(ca=ca, failures=0).on_conflict_do_nothing()
            )
        self._has_health.add(ca)

    def failed(self, ca: str, error: str, down_until: Callable[[int], int | None]) -> int:
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

    def succeeded(self, ca: str) -> None:
        with self._tx() as c:
            _reset_health(c, ca)

    def usage(
        self,
        ca: str,
        domains: Iterable[str],
        since: int,
        stale_before: int,
        latest: int | None = None,
    ) -> dict[str, list[int]]:
        """Times counted against `ca` per domain: certificates issued after `since`, and
        reservations of orders in flight made after `stale_before`; with `latest`, only
        the most recent `latest` of them per domain (all a limit of `latest` needs)."""
        wanted = list(domains)
        with self._tx() as c:
            return _usage(c, ca, wanted, since, stale_before, latest)

    def reserve(
        self,
        ca: str,
        site_id: str,
        domains: Sequence[str],
        now: int,
        room: Callable[[dict[str, list[int]]], bool] | None,
        window: tuple[int, int],
        latest: int | None = None,
    ) -> bool:
        """Count one certificate for each of `domains` against `ca` for an order about to
        start, if `room(usage)` still says there is room. Serialized per CA: the first
        statement updates the CA's health row (a row lock on PostgreSQL, the write lock
        on SQLite), so two workers cannot both take the last slot. `window` is
        (since, stale_before) and `latest` as for `usage`; `room` None counts the order
        whatever the room (an exempt one), without reading the usage."""
        self._ensure_health(ca)

        def work(c: Connection) -> None:
            c.execute(_LOCK_CA, {"p_ca": ca, "p_lock_ca": ca})
            _drop_reservations(c, ca, site_id)
            if room is not None and not room(_usage(c, ca, list(domains), *window, latest)):
                raise Lost
            rows = [
                {"ca": ca, "domain": d, "site_id": site_id, "at": now, "final": False}
                for d in domains
            ]
            if rows:
                c.execute(ca_issuances.insert(), rows)

        return self._committed(work)

    def settle(
        self, ca: str, site_id: str, now: int, issued: bool, succeeded: bool = False
    ) -> None:
        """The order the reservation was for ended: count it as issued at `now`, or not;
        with `succeeded`, also what `succeeded(ca)` does, in the same transaction."""
        with self._tx() as c:
            if succeeded:
                _reset_health(c, ca)
            if issued:
                c.execute(_FINAL, {"p_ca": ca, "p_site": site_id, "p_now": now})
            else:
                _drop_reservations(c, ca, site_id)

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

    def ensure_slots(self, ca: str, cap: int) -> None:
        """Rows for slots 0 to `cap - 1` of `ca`; whichever process comes first makes them."""
        rows = [{"ca": ca, "slot": n} for n in range(cap)]
        if rows:
            with self._tx() as c:
                c.execute(conflict_insert(c, ca_slots).values(rows).on_conflict_do_nothing())

    def take_slot(
        self, ca: str, cap: int, holder: str, site_id: str, now: int, until: int
    ) -> CaSlot | None:
        """A free slot of `ca` below `cap` (one whose lease expired counts as free), held
        by `holder` until `until`; None when all are held. `ensure_slots` first."""
        params = {
            "p_ca": ca, "p_cap": cap, "p_holder": holder, "p_site": site_id,
            "p_now": now, "p_until": until,
        }  # fmt: skip
        with self._tx() as c:
            number = c.execute(_TAKE_SLOT, params).scalar()
        return None if number is None else CaSlot(ca, int(number), holder)

    def refresh_slot(self, slot: CaSlot, until: int) -> bool:
        """Hold `slot` until `until`; False if it is no longer held by its holder."""
        with self._tx() as c:
            res = c.execute(ca_slots.update().where(_held(slot)).values(until=until))
        return bool(res.rowcount == 1)

    def release_slot(self, slot: CaSlot) -> bool:
        """Free `slot` if its holder still holds it."""
        params = {"p_ca": slot.ca, "p_slot": slot.number, "p_holder": slot.holder}
        with self._tx() as c:
            res = c.execute(_RELEASE_SLOT, params)
        return bool(res.rowcount == 1)

    def slots_held(self, ca: str, now: int) -> dict[int, str]:
        """Slot number -> holder, for the slots of `ca` held at `now`."""
        query = sa.select(ca_slots.c.slot, ca_slots.c.holder).where(
            ca_slots.c.ca == ca, ~_free_slot(now)
        )
        with self._tx() as c:
            return {int(n): str(h) for n, h in c.execute(query)}

    def add_stats(self, buckets: Iterable[CaStatsBucket]) -> None:
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

    def stats(self, since: int) -> list[CaStatsBucket]:
        """Every CA's buckets that start at `since` or later, by CA and hour."""
        query = (
            sa.select(ca_stats)
            .where(ca_stats.c.hour >= since)
            .order_by(ca_stats.c.ca, ca_stats.c.hour)
        )
        with self._tx() as c:
            return [CaStatsBucket(**r._mapping) for r in c.execute(query)]

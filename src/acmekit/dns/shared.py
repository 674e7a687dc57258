"""A record store shared by several `acmekit dns` processes through one database.

Each process keeps the whole store in memory and answers from it; the database is where
the processes agree. A change made through one process's API or UPDATE is written, in
one transaction, as the next serial: the single `dns_serial` row is taken with
`UPDATE ... SET serial = serial + 1` (which orders concurrent writers, across
processes), the records are inserted or deleted, and the change is kept in
`dns_changes`. The writer then applies it at once; every other process polls the serial
(every `poll` seconds, 0.2 by default) and applies the changes it has not seen, in
serial order, so the records and the SOA serial are the same everywhere within a
second. Each process sends NOTIFY for what it applies, so the secondaries hear of a
change even if the process that wrote it has died since.

The last `KEEP` serials' changes stay in `dns_changes`: a process that starts (or falls
behind further) reloads the records whole, and the changes it finds become its IXFR
journal. If the database cannot be reached, a process keeps answering from memory and
its API's writes fail until it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable
from itertools import groupby
from typing import Any, TypeVar

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from acmekit import migrate
from acmekit.database import UNAVAILABLE, create_engine
from acmekit.dns.schema import changes, records, tsig_times, zone_serial
from acmekit.dns.store import JOURNAL_SIZE, Change, Delta, RecordStore
from acmekit.dns.tsig import MAX_MACS_PER_KEY, TimesSigned, honoured_fudge, outside_window
from acmekit.protocol.problems import ProblemType, problem

log = logging.getLogger(__name__)

KEEP = JOURNAL_SIZE
POLL_SECONDS = 0.2
T = TypeVar("T")


def record_digest(name: str, rtype: str, rdata: str) -> str:
    """The unique key of a stored record (dns migration 0002)."""
    return hashlib.sha256(f"{name}\0{rtype}\0{rdata}".encode()).hexdigest()


def _key(change: Change) -> dict[str, Any]:
    return {
        "name": change.name.canonicalize().to_text(),
        "rtype": dns.rdatatype.to_text(change.rdata.rdtype),
        "rdata": change.rdata.to_text(),
    }


class _Unchanged(Exception):
    """Every change of a write was made already by another process: nothing to keep."""


def _change(row: Any) -> Change:
    rtype = dns.rdatatype.from_text(row.rtype)
    rdata = dns.rdata.from_text(dns.rdataclass.IN, rtype, row.rdata)
    return Change(bool(row.added), dns.name.from_text(row.name), rdata)


def soa_serial(serial: int) -> int:
    """The database's serial as a 32-bit SOA serial (0 is skipped)."""
    return serial % 2**32 or 1


class SharedStore:
    """Keeps `store` in step with the database at `url` and writes its changes there."""

    def __init__(self, url: str, store: RecordStore, poll: float = POLL_SECONDS) -> None:
        self.engine = create_engine(url)
        migrate.upgrade(self.engine, migrate.DNS)
        self.store = store
        self.poll = poll
        self.serial = 0  # the database serial applied to `store`
        self.load()
        store.writer = self.write
        store.transactor = self
        store.refresh = self.refresh

    def refresh(self) -> None:
        """Catch up before a write is decided (RecordStore.refresh). With the database
        out of reach the write is decided on what is here, and then fails with a 503."""
        try:
            self.catch_up()
        except UNAVAILABLE as exc:
            log.warning("shared records: catching up before a write: %s", exc)

    def close(self) -> None:
        self.engine.dispose()

    def load(self) -> None:
        """Replace the store's records with the database's, and rebuild its journal."""
        with self.engine.connect() as c:
            self._load(c, int(c.execute(sa.select(zone_serial.c.serial)).scalar_one()))

    def _load(self, c: Connection, serial: int) -> None:
        """`load`, reading the records as of `serial` on `c`."""
        rows = c.execute(sa.select(records).order_by(records.c.seq)).all()
        kept = c.execute(
            sa.select(changes)
            .where(changes.c.serial > serial - KEEP, changes.c.serial <= serial)
            .order_by(changes.c.serial, changes.c.position)
        ).all()
        found: dict[str, dict[str, list[str]]] = {}
        for row in rows:
            found.setdefault(row.name, {}).setdefault(row.rtype, []).append(row.rdata)
        self.store.restore({"serial": soa_serial(serial), "records": found})
        for number, group in groupby(kept, key=lambda r: int(r.serial)):
            done = tuple(_change(r) for r in group)
            self.store.journal.append(Delta(soa_serial(number - 1), soa_serial(number), done))
        self.serial = serial
        log.info("shared records loaded at serial %d: %d records", serial, len(rows))

    def write(self, batch: list[Change]) -> None:
        """Write one mutation as the next serial, then catch up (applying it). With the
        database out of reach the caller gets a 503 problem ("try again")."""
        self._written(lambda: self._write(batch))

    def _written(self, step: Callable[[], T]) -> T:
        """`step`, a write, then a catch-up that applies it; the database out of reach
        during the write is a 503 problem, after it only a warning (the next poll
        applies what was written)."""
        try:
            result = step()
        except UNAVAILABLE as exc:
            log.warning("shared records: write failed, database unreachable: %s", exc)
            raise problem(
                ProblemType.SERVER_INTERNAL,
                "the shared record store is unreachable; try again",
                status=503,
                retry_after=1,
            ) from None
        try:
            self.catch_up()
        except UNAVAILABLE as exc:  # written: the next poll applies it
            log.warning("shared records: catching up after a write: %s", exc)
        return result

    def _write(self, batch: list[Change]) -> None:
        """The batch was decided on this process's view, caught up just before; another
        process may have made the same change since. Under the serial row's lock, each
        change is made only if it changes something (an add that the unique digest
        turns away, a delete of nothing, are dropped), and only what was made is kept
        as the serial's changes; nothing made, nothing is written."""
        with contextlib.suppress(_Unchanged), self.engine.begin() as c:
            self._keep(c, self._next_serial(c), batch)

    def transact(self, decide: Callable[[], tuple[T, list[Change]]]) -> T:
        """Decide a write and make it as one step (RecordStore.transact): the serial
        row is taken first (its lock orders the writers of every process), the store
        catches up under it, `decide` looks at it and names the changes, and they are
        written in that same transaction. No other process writes in between, so what
        `decide` checked still holds when its changes land (RFC 2136 §3.7)."""
        return self._written(lambda: self._transact(decide))

    def _transact(self, decide: Callable[[], tuple[T, list[Change]]]) -> T:
        with contextlib.suppress(_Unchanged), self.engine.begin() as c:
            serial = self._next_serial(c)  # the lock, taken before anything is read
            self._catch_up(c, serial - 1)
            result, batch = decide()
            self._keep(c, serial, batch)
        return result

    @staticmethod
    def _next_serial(c: Connection) -> int:
        """Take the serial row (PostgreSQL's row lock, SQLite's write lock) and the
        serial this transaction writes as."""
        return int(
            c.execute(
                zone_serial.update()
                .where(zone_serial.c.id == 1)
                .values(serial=zone_serial.c.serial + 1)
                .returning(zone_serial.c.serial)
            ).scalar_one()
        )

    def _keep(self, c: Connection, serial: int, batch: list[Change]) -> None:
        """Write what of `batch` changes something as `serial`'s changes; with nothing
        made, _Unchanged (rolling the serial back)."""
        made = self._write_records(c, batch)
        if not made:
            raise _Unchanged
        c.execute(
            changes.insert(),
            [{"serial": serial, "position": i, "added": ch.added, **_key(ch)}
             for i, ch in enumerate(made)],
        )  # fmt: skip
        c.execute(changes.delete().where(changes.c.serial <= serial - KEEP))

    @staticmethod
    def _write_records(c: Connection, batch: Iterable[Change]) -> list[Change]:
        """Make the changes that change something; those made."""
        made = []
        for change in batch:
            key = _key(change)
            if change.added:
                # under the serial row's lock: no other writer is between these two
                top = c.execute(sa.select(sa.func.max(records.c.seq))).scalar()
                row = {"seq": int(top or 0) + 1, "digest": record_digest(**key), **key}
                insert = postgresql.insert if c.dialect.name == "postgresql" else sqlite.insert
                stmt = insert(records).values(**row).on_conflict_do_nothing()
                done = c.execute(stmt.returning(records.c.seq)).first()
            else:
                digest = record_digest(**key)
                gone = records.delete().where(records.c.digest == digest)
                done = c.execute(gone.returning(records.c.seq)).first()
            if done is not None:
                made.append(change)
        return made

    def catch_up(self) -> bool:
        """Apply the changes made since the last look; True if there were any."""
        with self.engine.connect() as c:
            serial = int(c.execute(sa.select(zone_serial.c.serial)).scalar_one())
            return self._catch_up(c, serial)

    def _catch_up(self, c: Connection, serial: int) -> bool:
        """Apply the changes up to `serial`, read on `c`."""
        if serial == self.serial:
            return False
        rows = c.execute(
            sa.select(changes)
            .where(changes.c.serial > self.serial, changes.c.serial <= serial)
            .order_by(changes.c.serial, changes.c.position)
        ).all()
        if not rows or int(rows[0].serial) != self.serial + 1:
            log.info("shared records: serial %d is gone from the changes; reloading", self.serial)
            self._load(c, serial)
            return True
        for number, group in groupby(rows, key=lambda r: int(r.serial)):
            self.store.apply([_change(r) for r in group], soa_serial(number))
            self.serial = number
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Catch up every `poll` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                self.catch_up()
            except UNAVAILABLE as exc:
                log.warning("shared records: database unreachable: %s", exc)
            except Exception:
                log.exception("shared records: catching up failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll)


class SharedTimesSigned(TimesSigned):
    """`TimesSigned` kept in the database (`dns_tsig_times`), so that every process
    refuses an UPDATE replayed to it after another took it (RFC 8945 §5.2.3): the MAC's
    row is inserted, and a second insert of it, by any process, finds it there. With
    the database out of reach this process's own memory decides (the UPDATE then fails
    at its write anyway)."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        super().__init__()
        self.engine = engine

    def accept(self, keyname: dns.name.Name, time_signed: int, fudge: int, mac: bytes) -> bool:
        key, seen = keyname.canonicalize().to_text(), hashlib.sha256(mac).hexdigest()
        until, now = time_signed + honoured_fudge(fudge), int(self.clock())
        if outside_window(time_signed, fudge, now):  # as TimesSigned.accept: the same now
            return False
        try:
            with self.engine.begin() as c:
                return _accept(c, key, seen, until, now)
        except UNAVAILABLE as exc:
            log.warning("shared TSIG MACs unreachable, deciding here: %s", exc)
            return super().accept(keyname, time_signed, fudge, mac)


def _accept(c: Connection, key: str, mac: str, until: int, now: int) -> bool:
    """Forget the key's MACs whose window has passed, then take `mac` unless it is
    there already or the key holds too many."""
    t = tsig_times
    c.execute(t.delete().where(t.c.key_name == key, t.c.valid_until < now))
    held = sa.select(sa.func.count()).select_from(t).where(t.c.key_name == key)
    if c.execute(held).scalar_one() >= MAX_MACS_PER_KEY:
        return False
    insert = postgresql.insert if c.dialect.name == "postgresql" else sqlite.insert
    new = insert(t).values(key_name=key, mac=mac, valid_until=until).on_conflict_do_nothing()
    return c.execute(new.returning(t.c.key_name)).first() is not None

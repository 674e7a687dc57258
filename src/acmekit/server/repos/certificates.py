"""Certificates: serial reservations, issuance, revocation, blocked keys, CRLs and ARI."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from acmekit.database import from_us, to_us
from acmekit.server.records import CertificateRecord, CrlRecord, RevokedEntry
from acmekit.server.repos.base import (
    Ahead,
    Cursor,
    Database,
    Repository,
    cols,
    ids_json,
    ids_load,
    opt_time,
    row_type,
)
from acmekit.server.schema import REVOKED, blocked_keys, certificates, crls

_CertificateRow = row_type(certificates)
_CERTIFICATE_COLS = cols(certificates)
_CERTIFICATE_BY_ID = f"SELECT {_CERTIFICATE_COLS} FROM certificates WHERE id = ?"
_CERTIFICATE_BY_SERIAL = f"SELECT {_CERTIFICATE_COLS} FROM certificates WHERE serial = ?"
_PEM_BY_ID = "SELECT pem FROM certificates WHERE id = ?"
_KEY_BLOCKED = "SELECT spki_sha256 FROM blocked_keys WHERE spki_sha256 = ?"
_RECORD_PRECERT = "UPDATE certificates SET precert = ? WHERE id = ?"
# All served by ix_certificates_crl_entries (its WHERE repeated, so the planner uses it).
_ENTRY_COLUMNS = f"SELECT serial, revoked_at, revocation_reason FROM certificates WHERE {REVOKED}"
_REVOKED_ENTRIES = f"{_ENTRY_COLUMNS} AND crl_shards = ? AND crl_shard = ? AND not_after > ?"
# Rows filed for another number of shards (by a process configured otherwise, during a
# change of `[crl] shards`), or not filed yet: their shard is computed from the serial.
# Three searches of the index, not an OR, which SQLite answers by scanning all of it.
_ENTRIES_FILED_OTHERWISE = (
    f"{_ENTRY_COLUMNS} AND crl_shards IS NULL AND not_after > ? UNION ALL "
    f"{_ENTRY_COLUMNS} AND crl_shards < ? AND not_after > ? UNION ALL "
    f"{_ENTRY_COLUMNS} AND crl_shards > ? AND not_after > ?"
)
_UNFILED = (
    f"SELECT id, serial FROM certificates WHERE {REVOKED} AND crl_shards IS NULL LIMIT :limit"
)
# Both columns at once, and only on a row still unfiled: a row's filing never changes.
_FILE = (
    "UPDATE certificates SET crl_shards = :shards, crl_shard = :shard "
    "WHERE id = :id AND crl_shards IS NULL"
)
# Certificates this process recorded, kept for their download: a client fetches its
# certificate right after finalize says where. About 3 KB each (with the chain).
ISSUED_KEPT = 512


def _found(rows: Sequence[Any], _params: Sequence[Any]) -> bool:
    return bool(rows)


# PostgreSQL: the order completed and the certificate's PEM stored (or, when the order had
# a certificate already, the serial abandoned) in one statement; the count says which.
_RECORD_ISSUED = (
    "WITH o AS (UPDATE orders SET certificate_id = ? WHERE id = ? AND certificate_id IS NULL "
    "RETURNING id), c AS (UPDATE certificates SET "
    "pem = CASE WHEN EXISTS (SELECT 1 FROM o) THEN ? ELSE pem END, "
    "abandoned = CASE WHEN EXISTS (SELECT 1 FROM o) THEN abandoned ELSE ? END WHERE id = ?) "
    "SELECT COUNT(*) FROM o"
)


_RESERVATION_COLUMNS = (
    "certificates (id, serial, order_id, account_id, pem, identifiers, "
    "not_before, not_after, issued, abandoned)"
)
_INSERT_RESERVATION = f"INSERT INTO {_RESERVATION_COLUMNS} VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)"
# PostgreSQL: a finalize's claim (ready -> processing, once) and, only if it won, its
# serial's reservation, in one statement; the count of claimed rows says who won.
CLAIM_AND_RESERVE = (
    "WITH o AS (UPDATE orders SET csr = ?, finalize_started = ? "
    "WHERE id = ? AND finalize_started IS NULL AND error IS NULL RETURNING id), "
    f"r AS (INSERT INTO {_RESERVATION_COLUMNS} "
    "SELECT ?, ?, ?, ?, NULL, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM o)) "
    "SELECT COUNT(*) FROM o"
)


def certificate_record(row: Any) -> CertificateRecord:
    """A certificates row (a SELECT of `cols(certificates)`) as its record."""
    return CertificateRecord(
        id=row.id,
        serial=row.serial,
        order_id=row.order_id,
        account_id=row.account_id,
        pem=row.pem,
        identifiers=ids_load(row.identifiers),
        not_before=from_us(row.not_before),
        not_after=from_us(row.not_after),
        issued=from_us(row.issued),
        revoked_at=opt_time(row.revoked_at),
        revocation_reason=row.revocation_reason,
        abandoned=bool(row.abandoned),
        precert=None if row.precert is None else bytes(row.precert),
    )


def reservation_values(rec: CertificateRecord) -> tuple[Any, ...]:
    return (
        rec.id,
        rec.serial,
        rec.order_id,
        rec.account_id,
        ids_json(rec.identifiers),
        to_us(rec.not_before),
        to_us(rec.not_after),
        to_us(rec.issued),
        False,
    )


def insert_reservation(c: Cursor, rec: CertificateRecord) -> None:
    """The serial's row before signing (pem NULL): no signed certificate goes unrecorded."""
    c.run(_INSERT_RESERVATION, reservation_values(rec))


class CertificateRepository(Repository):
    """Certificates from reservation to revocation, and what is published about them."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        # PEMs this process stored (`record_issued`), by certificate id. A recorded PEM
        # never changes (nothing writes `pem` once it is set, in any process, and no row
        # is deleted), so serving it from here cannot go stale.
        self._issued: dict[str, str] = {}
        self._issued_lock = threading.Lock()  # issuance may record from a worker thread

    def reserve_serial(self, rec: CertificateRecord) -> None:
        """Record the serial before signing (pem NULL): no signed certificate goes unrecorded."""
        self._run(_INSERT_RESERVATION, reservation_values(rec))

    def record_issued(self, cert_id: str, order_id: str, pem: str) -> bool:
        """Store the signed PEM and complete the order in one transaction (on PostgreSQL
        one statement); False, and the serial abandoned, if the order had another. On
        disk when this returns (`Database.durable`): the certificate is served from here
        on, and the sync makes the order's claim and the serial's reservation, committed
        before it, durable with it."""
        if self._postgres:
            row = self._one(_RECORD_ISSUED, (cert_id, order_id, pem, True, cert_id))
            if not row[0]:
                return False
            self._keep_issued(cert_id, pem)
            return True
        with self._durable() as c:
            changed = c.run(
                "UPDATE orders SET certificate_id = ? WHERE id = ? AND certificate_id IS NULL",
                (cert_id, order_id),
            )
            if changed != 1:
                c.run("UPDATE certificates SET abandoned = ? WHERE id = ?", (True, cert_id))
                return False
            c.run("UPDATE certificates SET pem = ? WHERE id = ?", (pem, cert_id))
        self._keep_issued(cert_id, pem)
        return True

    def _keep_issued(self, cert_id: str, pem: str) -> None:
        """After its commit: `pem` is what the database holds for `cert_id` from now on."""
        with self._issued_lock:
            if len(self._issued) >= ISSUED_KEPT:
                del self._issued[next(iter(self._issued))]  # the oldest
            self._issued[cert_id] = pem

    def pem(self, cert_id: str) -> str | None:
        """The certificate's PEM chain; None if there is no such certificate or it is not
        signed yet. One this process recorded is served from memory (the download
        follows finalize), others read by one column."""
        found = self._issued.get(cert_id)
        if found is not None:
            return found
        row = self._one(_PEM_BY_ID, (cert_id,))
        return None if row is None else row[0]

    def record_precert(self, cert_id: str, der: bytes) -> None:
        """Keep the precertificate signed for a reserved serial, before any log sees it.
        One statement through the driver's cursor, as `record_issued`: SQLAlchemy's
        statement building and its transaction cost several times the UPDATE itself on
        every CT issuance (docs/decisions.md, "CT's cost to the CA: instructions"). On
        disk when this returns (SQLite: `Database.durable`): the logs see the
        precertificate next, and from then its serial is issued (RFC 6962 §3.1) and must
        stay reserved and revocable."""
        if self._postgres:  # a commit in autocommit is on disk already
            self._run(_RECORD_PRECERT, (der, cert_id))
            return
        with self._durable() as c:
            c.run(_RECORD_PRECERT, (der, cert_id))

    def precert_reservation(self, order_id: str) -> CertificateRecord | None:
        """The order's reservation whose precertificate is signed but whose certificate
        is not: what a resumed issuance finishes (none when there is none)."""
        with self._tx() as c:
            row = c.execute(
                sa.select(certificates).where(
                    certificates.c.order_id == order_id,
                    certificates.c.pem.is_(None),
                    certificates.c.precert.is_not(None),
                    certificates.c.abandoned.is_(False),
                )
            ).first()
        return None if row is None else certificate_record(row)

    def abandon_reservations(self, order_id: str) -> None:
        """Serials reserved for an order but never completed: mark them, never reuse them."""
        with self._tx() as c:
            c.execute(
                certificates.update()
                .where(certificates.c.order_id == order_id, certificates.c.pem.is_(None))
                .values(abandoned=True)
            )

    def certificate(self, cert_id: str) -> CertificateRecord | None:
        row = self._one(_CERTIFICATE_BY_ID, (cert_id,))
        return None if row is None else certificate_record(_CertificateRow(*row))

    def certificate_by_serial(self, serial: str) -> CertificateRecord | None:
        row = self._one(_CERTIFICATE_BY_SERIAL, (serial,))
        return None if row is None else certificate_record(_CertificateRow(*row))

    def revoke(
        self, cert_id: str, reason: int, now: datetime, block: tuple[str, str] | None = None
    ) -> bool:
        """Mark revoked once; False if it already was (alreadyRevoked). `block`, the
        certificate's key (its SPKI's SHA-256) and serial for keyCompromise: the key
        blocklisted in the same transaction, so that no crash between two commits leaves
        the revocation without its block, which the retry (alreadyRevoked) would never
        add. On disk when this returns (`Database.durable_tx`): once answered, a revoked
        certificate must not come back good from a power loss."""
        with self._durable_tx() as c:
            res = c.execute(
                certificates.update()
                .where(certificates.c.id == cert_id, certificates.c.revoked_at.is_(None))
                .values(revoked_at=to_us(now), revocation_reason=reason)
            )
            if res.rowcount != 1:
                return False
            if block is not None:
                c.execute(_block_once(c, block[0], now, block[1]))
            return True

    def block_key(self, spki_sha256: str, now: datetime, serial: str | None = None) -> None:
        """Add a key to the blocklist on its own (a revocation for keyCompromise adds it
        in its own transaction, `revoke`); adding it twice is harmless. On disk when
        this returns."""
        with self._durable_tx() as c:
            c.execute(_block_once(c, spki_sha256, now, serial))

    def key_blocked(self, spki_sha256: str) -> bool:
        return self._one(_KEY_BLOCKED, (spki_sha256.lower(),)) is not None

    def key_blocked_ahead(self, spki_sha256: str) -> Ahead[bool]:
        """`key_blocked`, to send ahead (`Ahead`)."""
        return Ahead(_KEY_BLOCKED, (spki_sha256.lower(),), _found, self._all)

    def crl(self, shard: int) -> CrlRecord | None:
        with self._tx() as c:
            row = c.execute(sa.select(crls).where(crls.c.shard == shard)).first()
        if row is None:
            return None
        return CrlRecord(row.shard, row.number, from_us(row.this_update), bytes(row.der))

    def save_crl(self, rec: CrlRecord) -> bool:
        """Store shard's CRL if its number is one past the stored one (or the first). On
        disk when this returns: the CRL is published from here, and one lost would let
        its number be signed again over other contents (RFC 5280 §5.2.3)."""
        number, this_update, der = rec.number, to_us(rec.this_update), rec.der
        try:
            with self._durable_tx() as c:
                if rec.number == 1:
                    c.execute(
                        crls.insert().values(
                            shard=rec.shard, number=number, this_update=this_update, der=der
                        )
                    )
                    return True
                res = c.execute(
                    crls.update()
                    .where(crls.c.shard == rec.shard, crls.c.number == rec.number - 1)
                    .values(number=number, this_update=this_update, der=der)
                )
                return bool(res.rowcount == 1)
        except sa.exc.IntegrityError:
            return False

    def revoked_certificates(self, unexpired_at: datetime) -> list[CertificateRecord]:
        """Revoked certificates that have not expired yet, whole (PEM included)."""
        with self._tx() as c:
            rows = c.execute(
                sa.select(certificates).where(
                    certificates.c.revoked_at.is_not(None),
                    certificates.c.not_after > to_us(unexpired_at),
                )
            ).all()
        return [certificate_record(r) for r in rows]

    def revoked_entries(
        self, shard: int, shards: int, unexpired_at: datetime
    ) -> list[RevokedEntry]:
        """What `shard`'s CRL of `shards` must list (BR §4.10.1: an entry stays until its
        certificate expires): each unexpired revoked certificate whose serial falls in
        it, with its serial, time and reason only, read from ix_certificates_crl_entries
        alone: the rows filed for (`shards`, `shard`), then those filed for another
        number of shards or not yet filed (a change of `[crl] shards` leaves a few),
        their shard computed here. No other shard's rows filed for `shards`, no PEM."""
        at = to_us(unexpired_at)
        rows = self._all(_REVOKED_ENTRIES, (shards, shard, at))
        others = self._all(_ENTRIES_FILED_OTHERWISE, (at, shards, at, shards, at))
        rows += [r for r in others if int(r[0], 16) % shards == shard]
        return [RevokedEntry(serial, from_us(at), reason) for serial, at, reason in rows]

    def file_revoked(self, shards: int, limit: int) -> int:
        """File up to `limit` revoked rows not filed yet (revoked since the last CRL, or
        before schema 0014) under their shard of `shards` (`serial % shards`), with
        `shards` beside it; how many. A filed row is never filed again: a process
        configured with another number of shards reads it as `revoked_entries` says,
        so no entry leaves the CRL its certificate's CDP names. Found through the
        entries' index."""
        with self._tx() as c:
            rows = c.execute(sa.text(_UNFILED), {"limit": limit}).all()
            if rows:
                c.execute(
                    sa.text(_FILE),
                    [
                        {"shards": shards, "shard": int(serial, 16) % shards, "id": cert_id}
                        for cert_id, serial in rows
                    ],
                )
        return len(rows)

    def replacement(self, cert_id: str) -> str | None:
        """The order that replaces this certificate, if any."""
        row = self._one("SELECT replaced_by FROM certificates WHERE id = ?", (cert_id,))
        return None if row is None or row[0] is None else str(row[0])

    def claim_replacement(self, cert_id: str, order_id: str, previous: str | None) -> bool:
        """Record `order_id` as the certificate's replacement; `previous` is the failed
        order that held the claim before (compare-and-set), or None for the first."""
        held = "replaced_by IS NULL" if previous is None else "replaced_by = ?"
        with self._once() as c:
            changed = c.run(
                f"UPDATE certificates SET replaced_by = ? WHERE id = ? AND {held}",
                (order_id, cert_id) if previous is None else (order_id, cert_id, previous),
            )
        return changed == 1

    def ari_window_start(self, cert_id: str) -> datetime | None:
        row = self._one("SELECT ari_window_start FROM certificates WHERE id = ?", (cert_id,))
        return None if row is None else opt_time(row[0])

    def move_ari_window(self, cert_id: str, start: datetime) -> None:
        with self._once() as c:
            c.run(
                "UPDATE certificates SET ari_window_start = ? WHERE id = ?",
                (to_us(start), cert_id),
            )


def _block_once(c: Connection, spki_sha256: str, now: datetime, serial: str | None) -> Any:
    """The key's blocklist row, added unless it is there already (in the transaction
    that goes on: no IntegrityError to abort it with)."""
    values = {"spki_sha256": spki_sha256.lower(), "added": to_us(now), "serial": serial}
    if c.dialect.name == "postgresql":
        return pg_insert(blocked_keys).values(**values).on_conflict_do_nothing()
    return sqlite_insert(blocked_keys).values(**values).on_conflict_do_nothing()

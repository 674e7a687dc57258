"""The CA's storage: SQLAlchemy Core over SQLite (embedded default) or PostgreSQL.

How it keeps its promises:
- Every state change that two processes could race on is one conditional UPDATE whose
  row count says who won (finalize claims, nonce redemption, revocation), so several
  server processes can share one PostgreSQL database.
- Times are stored as integer microseconds since the epoch (UTC): the same on both
  databases, cheap to index and compare, never a naive datetime.
- A certificate's serial is recorded (row with pem NULL) before it is signed, so no
  signed certificate is ever unrecorded; a crash leaves a reservation that recovery
  marks abandoned.
- The statements of the request path (nonces, accounts, orders, authorizations,
  challenges, issuance, rate-limit buckets) are written once as SQL text and run on the
  driver's own cursor over a pooled connection: the same statements SQLAlchemy would
  send, without building and caching an expression per call, which cost about five times
  the statement itself on SQLite (docs/decisions.md). The schema and the rarely used
  statements stay in SQLAlchemy Core.
"""

from __future__ import annotations

import json
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from acmekit import migrate
from acmekit.database import create_engine as create_engine
from acmekit.database import from_us as from_us
from acmekit.database import to_us as to_us
from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
)
from acmekit.server.ratelimits import Bucket
from acmekit.server.records import (
    AccountRecord,
    AuthorizationRecord,
    CertificateRecord,
    ChallengeRecord,
    CrlRecord,
    EabKey,
    OrderRecord,
)
from acmekit.server.schema import (
    accounts,
    authorizations,
    blocked_keys,
    certificates,
    challenges,
    crls,
    eab_keys,
    orders,
    settings,
    used_nonces,
)

E = TypeVar("E", bound=Enum)


def _row_type(table: sa.Table) -> Any:
    """A named tuple of the table's columns, in order: what a raw SELECT of `_cols` yields."""
    return namedtuple(f"{table.name}_row", [c.name for c in table.columns])


def _cols(table: sa.Table, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + c.name for c in table.columns)


_AccountRow = _row_type(accounts)
_OrderRow = _row_type(orders)
_AuthzRow = _row_type(authorizations)
_ChallengeRow = _row_type(challenges)
_CertificateRow = _row_type(certificates)

_ACCOUNT_COLS = _cols(accounts)
_ORDER_COLS = _cols(orders)
_CHALLENGE_COLS = _cols(challenges)
_CERTIFICATE_COLS = _cols(certificates)
_AUTHZ_JOIN_COLS = _cols(authorizations, "a") + ", " + _cols(challenges, "c")
_AUTHZ_WIDTH = len(authorizations.columns)


_INSERT_NONCE = "INSERT INTO used_nonces (nonce, issued) VALUES (?, ?)"
_ACCOUNT_BY_ID = f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = ?"
_ACCOUNT_BY_THUMBPRINT = f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE thumbprint = ?"
_INSERT_AUTHZ = (
    "INSERT INTO authorizations (id, account_id, identifier_type, identifier_value, "
    "wildcard, stored_status, expires, profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_CHALLENGE = (
    "INSERT INTO challenges (id, authz_id, type, token, status) VALUES (?, ?, ?, ?, ?)"
)
_RENEWAL_AUTHZ_EXISTS = "SELECT 1 FROM authorizations WHERE id = ? AND renewal_order_id IS NOT NULL"
# An authorization may already serve an earlier renewal order: that one stays.
_MARK_RENEWAL_AUTHZS = (
    "UPDATE authorizations SET renewal_order_id = ? WHERE renewal_order_id IS NULL AND id IN "
)
_AUTHZ_JOIN = (
    f"SELECT {_AUTHZ_JOIN_COLS} FROM authorizations a "
    "LEFT JOIN challenges c ON c.authz_id = a.id WHERE a.id IN "
)
_REUSABLE_AUTHZ = (
    "SELECT id FROM authorizations WHERE account_id = ? AND identifier_value = ? "
    "AND identifier_type = ? AND wildcard = ? AND stored_status = ? AND expires > ? "
    "ORDER BY expires DESC LIMIT 5"
)
# Pending as §7.1.6 derives it: stored pending, not expired, no challenge valid or invalid.
_PENDING_AUTHZS = (
    "SELECT COUNT(*), MIN(a.expires) FROM authorizations a WHERE a.account_id = ? "
    "AND a.stored_status = ? AND a.expires > ? AND NOT EXISTS (SELECT 1 FROM challenges c "
    "WHERE c.authz_id = a.id AND c.status IN (?, ?))"
)
_CHALLENGE_BY_ID = f"SELECT {_CHALLENGE_COLS} FROM challenges WHERE id = ?"
_INSERT_ORDER = (
    "INSERT INTO orders (id, account_id, identifiers, authz_ids, expires, created, "
    "not_before, not_after, profile, replaces) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ORDER_BY_ID = f"SELECT {_ORDER_COLS} FROM orders WHERE id = ?"
_CERTIFICATE_BY_ID = f"SELECT {_CERTIFICATE_COLS} FROM certificates WHERE id = ?"
_CERTIFICATE_BY_SERIAL = f"SELECT {_CERTIFICATE_COLS} FROM certificates WHERE serial = ?"


def _members(enum: type[E]) -> Callable[[str], E]:
    """`enum(value)` as a dict lookup: rows are read on every request, and Enum's own
    call costs several times a lookup (a bad value still raises)."""
    by_value = {member.value: member for member in enum}

    def member(value: str) -> E:
        found = by_value.get(value)
        return enum(value) if found is None else found

    return member


_account_status = _members(AccountStatus)
_authz_status = _members(AuthorizationStatus)
_challenge_status = _members(ChallengeStatus)
_challenge_type = _members(ChallengeType)
_identifier_type = _members(IdentifierType)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def _ids_json(ids: Sequence[Identifier]) -> str:
    return json.dumps([i.to_json() for i in ids])


def _ids_load(text: str) -> tuple[Identifier, ...]:
    return tuple(Identifier(_identifier_type(d["type"]), d["value"]) for d in json.loads(text))


def _json_or_none(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


class _Cursor:
    """A DBAPI cursor that takes SQL written with ? placeholders."""

    __slots__ = ("_cur", "_sql")

    def __init__(self, cur: Any, sql: Callable[[str], str]) -> None:
        self._cur = cur
        self._sql = sql

    def run(self, text: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        self._cur.execute(self._sql(text), params)
        return int(self._cur.rowcount)

    def many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(self._sql(text), rows)

    def one(self, text: str, params: Sequence[Any] = ()) -> Any:
        self._cur.execute(self._sql(text), params)
        return self._cur.fetchone()

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        self._cur.execute(self._sql(text), params)
        return list(self._cur.fetchall())


class Store:
    """Persistent records of the CA. Methods are short transactions; none reads a clock."""

    def __init__(self, engine: Engine, auto_upgrade: bool = True) -> None:
        """Over `engine`, upgraded to this schema first (or, `auto_upgrade` off, refused
        with `SchemaOutOfDate` if it is not at it)."""
        self.engine = engine
        migrate.prepare(engine, migrate.SERVER, auto_upgrade)
        self._qmark = engine.dialect.paramstyle == "qmark"
        self._sqlite = engine.dialect.name == "sqlite"
        self._local = threading.local()
        self._integrity: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError
        self._texts: dict[str, str] = {}

    @classmethod
    def from_url(cls, url: str, auto_upgrade: bool = True) -> Store:
        return cls(create_engine(url), auto_upgrade)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _raw(self) -> Iterator[_Cursor]:
        """One transaction through the driver's own cursor."""
        held = self._held()
        conn = held if held is not None else self.engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                yield _Cursor(cur, self._sql)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cur.close()
        finally:
            if held is None:
                conn.close()

    def _held(self) -> Any:
        """On SQLite, this thread's own connection, kept: a pool checkout costs three times
        a short statement there (docs/decisions.md). PostgreSQL's come from the pool,
        which replaces a connection the server has dropped."""
        if not self._sqlite:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.engine.raw_connection()
        return conn

    def _sql(self, text: str) -> str:
        """`text` (written with ? placeholders) in the driver's parameter style."""
        if self._qmark:
            return text
        found = self._texts.get(text)
        if found is None:
            found = self._texts[text] = text.replace("?", "%s")
        return found

    # settings -----------------------------------------------------------------------

    def setting(self, name: str, default: str) -> str:
        """The stored value of `name`, storing `default` first if there is none (race-safe)."""
        with self._tx() as c:
            row = c.execute(sa.select(settings.c.value).where(settings.c.name == name)).first()
            if row is not None:
                return str(row.value)
        try:
            with self._tx() as c:
                c.execute(settings.insert().values(name=name, value=default))
        except sa.exc.IntegrityError:
            pass
        with self._tx() as c:
            return str(
                c.execute(sa.select(settings.c.value).where(settings.c.name == name)).scalar_one()
            )

    def stored_setting(self, name: str) -> str | None:
        with self._tx() as c:
            value = c.execute(sa.select(settings.c.value).where(settings.c.name == name)).scalar()
        return None if value is None else str(value)

    def put_setting(self, name: str, value: str) -> None:
        """Store `value` under `name`, replacing what was there (the last writer wins)."""
        with self._tx() as c:
            done = c.execute(settings.update().where(settings.c.name == name).values(value=value))
            if done.rowcount == 1:
                return
        try:
            with self._tx() as c:
                c.execute(settings.insert().values(name=name, value=value))
        except sa.exc.IntegrityError:  # another process inserted it meanwhile: theirs is as new
            pass

    # nonces -------------------------------------------------------------------------

    def redeem_nonce(self, nonce: str, issued: datetime) -> bool:
        """Record `nonce` as used; False if it was used before (by any process)."""
        try:
            with self._raw() as c:
                c.run(_INSERT_NONCE, (nonce, to_us(issued)))
        except self._integrity:
            return False
        return True

    def redeem_nonce_for(
        self, nonce: str, issued: datetime, account_id: str | None
    ) -> tuple[bool, AccountRecord | None]:
        """`redeem_nonce`, and in the same transaction the account `account_id` (if any)."""
        try:
            with self._raw() as c:
                c.run(_INSERT_NONCE, (nonce, to_us(issued)))
                row = None if account_id is None else c.one(_ACCOUNT_BY_ID, (account_id,))
        except self._integrity:
            return False, None
        return True, None if row is None else self._account(_AccountRow(*row))

    def prune_nonces(self, issued_before: datetime) -> int:
        with self._tx() as c:
            res = c.execute(used_nonces.delete().where(used_nonces.c.issued < to_us(issued_before)))
            return int(res.rowcount)

    # accounts -----------------------------------------------------------------------

    def _account(self, row: Any) -> AccountRecord:
        return AccountRecord(
            id=row.id,
            thumbprint=row.thumbprint,
            jwk=json.loads(row.jwk),
            contact=tuple(json.loads(row.contact)),
            status=_account_status(row.status),
            created=from_us(row.created),
            eab_kid=row.eab_kid,
        )

    def account(self, account_id: str) -> AccountRecord | None:
        with self._raw() as c:
            row = c.one(_ACCOUNT_BY_ID, (account_id,))
        return None if row is None else self._account(_AccountRow(*row))

    def account_by_thumbprint(self, thumb: str) -> AccountRecord | None:
        with self._raw() as c:
            row = c.one(_ACCOUNT_BY_THUMBPRINT, (thumb,))
        return None if row is None else self._account(_AccountRow(*row))

    def add_account(self, rec: AccountRecord) -> AccountRecord:
        """Insert; if another request registered the same key first, return that one."""
        try:
            with self._tx() as c:
                c.execute(
                    accounts.insert().values(
                        id=rec.id,
                        thumbprint=rec.thumbprint,
                        jwk=json.dumps(rec.jwk),
                        contact=json.dumps(list(rec.contact)),
                        status=str(rec.status),
                        created=to_us(rec.created),
                        eab_kid=rec.eab_kid,
                    )
                )
        except sa.exc.IntegrityError:
            existing = self.account_by_thumbprint(rec.thumbprint)
            if existing is None:
                raise
            return existing
        return rec

    def eab_kid_used(self, kid: str) -> bool:
        with self._tx() as c:
            return (
                c.execute(sa.select(accounts.c.id).where(accounts.c.eab_kid == kid)).first()
                is not None
            )

    def update_account(
        self,
        account_id: str,
        *,
        contact: Sequence[str] | None = None,
        status: AccountStatus | None = None,
    ) -> None:
        values: dict[str, Any] = {}
        if contact is not None:
            values["contact"] = json.dumps(list(contact))
        if status is not None:
            values["status"] = str(status)
        if values:
            with self._tx() as c:
                c.execute(accounts.update().where(accounts.c.id == account_id).values(**values))

    def change_account_key(self, account_id: str, jwk: dict[str, str], thumb: str) -> bool:
        """Swap the key; False if another account holds the new key already."""
        try:
            with self._tx() as c:
                c.execute(
                    accounts.update()
                    .where(accounts.c.id == account_id)
                    .values(jwk=json.dumps(jwk), thumbprint=thumb)
                )
        except sa.exc.IntegrityError:
            return False
        return True

    # authorizations and challenges --------------------------------------------------

    def add_authorization(
        self, authz: AuthorizationRecord, c: _Cursor | None = None, profile: str | None = None
    ) -> None:
        """Store `authz`, made for an order of `profile` (None: the default profile)."""
        if c is None:
            with self._raw() as cur:
                self.add_authorization(authz, cur, profile)
            return
        c.run(
            _INSERT_AUTHZ,
            (
                authz.id,
                authz.account_id,
                str(authz.identifier.type),
                authz.identifier.value,
                authz.wildcard,
                str(authz.stored_status),
                to_us(authz.expires),
                profile,
            ),
        )
        c.many(
            _INSERT_CHALLENGE,
            [(ch.id, authz.id, str(ch.type), ch.token, str(ch.status)) for ch in authz.challenges],
        )

    def _challenge(self, row: Any) -> ChallengeRecord:
        return ChallengeRecord(
            id=row.id,
            authz_id=row.authz_id,
            type=_challenge_type(row.type),
            token=row.token,
            status=_challenge_status(row.status),
            validated=_opt_time(row.validated),
            error=_json_or_none(row.error),
            started=_opt_time(row.started),
        )

    def authorizations(self, ids: Sequence[str]) -> list[AuthorizationRecord]:
        """The authorizations with these ids, in the order given (missing ones skipped)."""
        if not ids:
            return []
        with self._raw() as c:
            return self._authorizations(c, ids)

    def _authorizations(self, c: _Cursor, ids: Sequence[str]) -> list[AuthorizationRecord]:
        """Authorizations and their challenges in one statement (a join)."""
        if not ids:
            return []
        rows = c.all(_AUTHZ_JOIN + f"({_marks(len(ids))})", tuple(ids))
        heads: dict[str, Any] = {}
        chs: dict[str, list[ChallengeRecord]] = {}
        for row in rows:
            head = heads.get(row[0])
            if head is None:
                head = heads[row[0]] = _AuthzRow(*row[:_AUTHZ_WIDTH])
            if row[_AUTHZ_WIDTH] is not None:
                ch = self._challenge(_ChallengeRow(*row[_AUTHZ_WIDTH:]))
                chs.setdefault(head.id, []).append(ch)
        by_id = {
            r.id: AuthorizationRecord(
                id=r.id,
                account_id=r.account_id,
                identifier=Identifier(_identifier_type(r.identifier_type), r.identifier_value),
                wildcard=bool(r.wildcard),
                stored_status=_authz_status(r.stored_status),
                expires=from_us(r.expires),
                challenges=tuple(sorted(chs.get(r.id, []), key=lambda ch: ch.type)),
            )
            for r in heads.values()
        }
        return [by_id[i] for i in ids if i in by_id]

    def authorization(self, authz_id: str) -> AuthorizationRecord | None:
        found = self.authorizations([authz_id])
        return found[0] if found else None

    def reusable_authorizations(
        self, account_id: str, identifier: Identifier, wildcard: bool, valid_after: datetime
    ) -> list[AuthorizationRecord]:
        """Candidates for reuse (§7.1.3 lets a server reuse authorizations): newest first."""
        params = (
            account_id,
            identifier.value,
            str(identifier.type),
            wildcard,
            str(AuthorizationStatus.PENDING),
            to_us(valid_after),
        )
        with self._raw() as c:
            rows = c.all(_REUSABLE_AUTHZ, params)
            return self._authorizations(c, [r[0] for r in rows])

    def pending_authorizations(self, account_id: str, now: datetime) -> tuple[int, datetime | None]:
        """How many authorizations of the account are pending, and when the first expires."""
        params = (
            account_id,
            str(AuthorizationStatus.PENDING),
            to_us(now),
            str(ChallengeStatus.VALID),
            str(ChallengeStatus.INVALID),
        )
        with self._raw() as c:
            count, first = c.one(_PENDING_AUTHZS, params)
        return int(count), _opt_time(first)

    def set_authorization_status(self, authz_id: str, status: AuthorizationStatus) -> None:
        with self._tx() as c:
            c.execute(
                authorizations.update()
                .where(authorizations.c.id == authz_id)
                .values(stored_status=str(status))
            )

    def challenge(self, challenge_id: str) -> ChallengeRecord | None:
        with self._raw() as c:
            row = c.one(_CHALLENGE_BY_ID, (challenge_id,))
        return None if row is None else self._challenge(_ChallengeRow(*row))

    def start_challenge(self, challenge_id: str, now: datetime) -> bool:
        """pending -> processing; False if it was not pending (already started or done)."""
        with self._raw() as c:
            changed = c.run(
                "UPDATE challenges SET status = ?, started = ? WHERE id = ? AND status = ?",
                (
                    str(ChallengeStatus.PROCESSING),
                    to_us(now),
                    challenge_id,
                    str(ChallengeStatus.PENDING),
                ),
            )
        return changed == 1

    def finish_challenge(
        self,
        challenge_id: str,
        now: datetime,
        error: dict[str, Any] | None,
        authz_expires: datetime | None = None,
    ) -> None:
        """processing -> valid or invalid; a success also extends the authorization."""
        status = ChallengeStatus.INVALID if error else ChallengeStatus.VALID
        with self._raw() as c:
            if authz_expires is not None and not error:
                c.run(
                    "UPDATE authorizations SET expires = ? WHERE id = "
                    "(SELECT authz_id FROM challenges WHERE id = ?)",
                    (to_us(authz_expires), challenge_id),
                )
            c.run(
                "UPDATE challenges SET status = ?, validated = ?, error = ? "
                "WHERE id = ? AND status = ?",
                (
                    str(status),
                    None if error else to_us(now),
                    json.dumps(error) if error else None,
                    challenge_id,
                    str(ChallengeStatus.PROCESSING),
                ),
            )

    def stale_challenges(self, started_before: datetime) -> list[ChallengeRecord]:
        """Challenges left processing by a process that stopped: recovery re-runs them."""
        with self._tx() as c:
            rows = c.execute(
                sa.select(challenges).where(
                    challenges.c.status == str(ChallengeStatus.PROCESSING),
                    challenges.c.started < to_us(started_before),
                )
            ).all()
        return [self._challenge(r) for r in rows]

    def restart_challenge(self, challenge_id: str, was: datetime, now: datetime) -> bool:
        """Take over a stale validation; exactly one process wins (compare-and-set)."""
        with self._tx() as c:
            res = c.execute(
                challenges.update()
                .where(challenges.c.id == challenge_id, challenges.c.started == to_us(was))
                .values(started=to_us(now))
            )
            return bool(res.rowcount == 1)

    # orders -------------------------------------------------------------------------

    def add_order(self, order: OrderRecord, new_authzs: Sequence[AuthorizationRecord]) -> None:
        with self._raw() as c:
            for authz in new_authzs:
                self.add_authorization(authz, c, order.profile)
            c.run(
                _INSERT_ORDER,
                (
                    order.id,
                    order.account_id,
                    _ids_json(order.identifiers),
                    json.dumps(list(order.authz_ids)),
                    to_us(order.expires),
                    to_us(order.created),
                    None if order.not_before is None else to_us(order.not_before),
                    None if order.not_after is None else to_us(order.not_after),
                    order.profile,
                    order.replaces,
                ),
            )
            if order.replaces is not None and order.authz_ids:
                c.run(
                    _MARK_RENEWAL_AUTHZS + f"({_marks(len(order.authz_ids))})",
                    (order.id, *order.authz_ids),
                )

    def _order(self, row: Any) -> OrderRecord:
        return OrderRecord(
            id=row.id,
            account_id=row.account_id,
            identifiers=_ids_load(row.identifiers),
            authz_ids=tuple(json.loads(row.authz_ids)),
            expires=from_us(row.expires),
            created=from_us(row.created),
            not_before=_opt_time(row.not_before),
            not_after=_opt_time(row.not_after),
            profile=row.profile,
            replaces=row.replaces,
            csr=row.csr,
            finalize_started=_opt_time(row.finalize_started),
            error=_json_or_none(row.error),
            certificate_id=row.certificate_id,
        )

    def order(self, order_id: str) -> OrderRecord | None:
        with self._raw() as c:
            row = c.one(_ORDER_BY_ID, (order_id,))
        return None if row is None else self._order(_OrderRow(*row))

    def account_orders(self, account_id: str, limit: int = 1000) -> list[OrderRecord]:
        with self._tx() as c:
            rows = c.execute(
                sa.select(orders)
                .where(orders.c.account_id == account_id)
                .order_by(orders.c.created.desc())
                .limit(limit)
            ).all()
        return [self._order(r) for r in rows]

    def authz_in_renewal(self, authz_id: str) -> bool:
        """Whether an order that carries `replaces` uses this authorization (RFC 9773 §5
        renewals are exempt from rate limits, failed validations included)."""
        with self._raw() as c:
            return c.one(_RENEWAL_AUTHZ_EXISTS, (authz_id,)) is not None

    def claim_finalize(self, order_id: str, csr: bytes, now: datetime) -> bool:
        """ready -> processing, once: of two concurrent finalizes exactly one wins."""
        with self._raw() as c:
            changed = c.run(
                "UPDATE orders SET csr = ?, finalize_started = ? "
                "WHERE id = ? AND finalize_started IS NULL AND error IS NULL",
                (csr, to_us(now), order_id),
            )
        return changed == 1

    def retake_finalize(self, order_id: str, was: datetime, now: datetime) -> bool:
        """Take over an issuance that a stopped process left behind (compare-and-set)."""
        with self._tx() as c:
            res = c.execute(
                orders.update()
                .where(
                    orders.c.id == order_id,
                    orders.c.finalize_started == to_us(was),
                    orders.c.certificate_id.is_(None),
                )
                .values(finalize_started=to_us(now))
            )
            return bool(res.rowcount == 1)

    def stale_finalizations(self, started_before: datetime) -> list[OrderRecord]:
        with self._tx() as c:
            rows = c.execute(
                sa.select(orders).where(
                    orders.c.finalize_started < to_us(started_before),
                    orders.c.certificate_id.is_(None),
                    orders.c.error.is_(None),
                )
            ).all()
        return [self._order(r) for r in rows]

    def fail_order(self, order_id: str, error: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute(
                orders.update()
                .where(orders.c.id == order_id, orders.c.certificate_id.is_(None))
                .values(error=json.dumps(error))
            )

    # certificates -------------------------------------------------------------------

    def reserve_serial(self, rec: CertificateRecord) -> None:
        """Record the serial before signing (pem NULL): no signed certificate goes unrecorded."""
        with self._raw() as c:
            c.run(
                "INSERT INTO certificates (id, serial, order_id, account_id, pem, identifiers, "
                "not_before, not_after, issued, abandoned) "
                "VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                (
                    rec.id,
                    rec.serial,
                    rec.order_id,
                    rec.account_id,
                    _ids_json(rec.identifiers),
                    to_us(rec.not_before),
                    to_us(rec.not_after),
                    to_us(rec.issued),
                    False,
                ),
            )

    def record_issued(self, cert_id: str, order_id: str, pem: str) -> bool:
        """Store the signed PEM and complete the order in one transaction."""
        with self._raw() as c:
            changed = c.run(
                "UPDATE orders SET certificate_id = ? WHERE id = ? AND certificate_id IS NULL",
                (cert_id, order_id),
            )
            if changed != 1:
                c.run("UPDATE certificates SET abandoned = ? WHERE id = ?", (True, cert_id))
                return False
            c.run("UPDATE certificates SET pem = ? WHERE id = ?", (pem, cert_id))
            return True

    def abandon_reservations(self, order_id: str) -> None:
        """Serials reserved for an order but never completed: mark them, never reuse them."""
        with self._tx() as c:
            c.execute(
                certificates.update()
                .where(certificates.c.order_id == order_id, certificates.c.pem.is_(None))
                .values(abandoned=True)
            )

    def _certificate(self, row: Any) -> CertificateRecord:
        return CertificateRecord(
            id=row.id,
            serial=row.serial,
            order_id=row.order_id,
            account_id=row.account_id,
            pem=row.pem,
            identifiers=_ids_load(row.identifiers),
            not_before=from_us(row.not_before),
            not_after=from_us(row.not_after),
            issued=from_us(row.issued),
            revoked_at=_opt_time(row.revoked_at),
            revocation_reason=row.revocation_reason,
            abandoned=bool(row.abandoned),
        )

    def certificate(self, cert_id: str) -> CertificateRecord | None:
        with self._raw() as c:
            row = c.one(_CERTIFICATE_BY_ID, (cert_id,))
        return None if row is None else self._certificate(_CertificateRow(*row))

    def certificate_by_serial(self, serial: str) -> CertificateRecord | None:
        with self._raw() as c:
            row = c.one(_CERTIFICATE_BY_SERIAL, (serial,))
        return None if row is None else self._certificate(_CertificateRow(*row))

    def revoke(self, cert_id: str, reason: int, now: datetime) -> bool:
        """Mark revoked once; False if it already was (alreadyRevoked)."""
        with self._tx() as c:
            res = c.execute(
                certificates.update()
                .where(certificates.c.id == cert_id, certificates.c.revoked_at.is_(None))
                .values(revoked_at=to_us(now), revocation_reason=reason)
            )
            return bool(res.rowcount == 1)

    # blocked keys ---------------------------------------------------------------------

    def block_key(self, spki_sha256: str, now: datetime, serial: str | None = None) -> None:
        """Add a key to the blocklist (keyCompromise); adding it twice is harmless."""
        try:
            with self._tx() as c:
                c.execute(
                    blocked_keys.insert().values(
                        spki_sha256=spki_sha256.lower(), added=to_us(now), serial=serial
                    )
                )
        except sa.exc.IntegrityError:
            pass

    def key_blocked(self, spki_sha256: str) -> bool:
        with self._raw() as c:
            row = c.one(
                "SELECT spki_sha256 FROM blocked_keys WHERE spki_sha256 = ?",
                (spki_sha256.lower(),),
            )
        return row is not None

    # rate-limit buckets ---------------------------------------------------------------

    def update_bucket(
        self, key: str, change: Callable[[Bucket | None], Bucket | None]
    ) -> Bucket | None:
        """Read a bucket, let `change` decide, write its answer by compare-and-set.

        `change` returns the new state, or None to leave the bucket alone. If another
        process changed the row in between, it runs again on the fresh state.
        """
        for _ in range(50):
            try:
                with self._raw() as c:
                    row = c.one(
                        "SELECT tokens, updated, version FROM rate_buckets WHERE key = ?", (key,)
                    )
                    current = None if row is None else Bucket(row[0], from_us(row[1]))
                    new = change(current)
                    if new is None:
                        return current
                    if row is None:
                        c.run(
                            "INSERT INTO rate_buckets (key, tokens, updated, version) "
                            "VALUES (?, ?, ?, 0)",
                            (key, new.tokens, to_us(new.updated)),
                        )
                        return new
                    changed = c.run(
                        "UPDATE rate_buckets SET tokens = ?, updated = ?, version = ? "
                        "WHERE key = ? AND version = ?",
                        (new.tokens, to_us(new.updated), row[2] + 1, key, row[2]),
                    )
                    if changed == 1:
                        return new
            except self._integrity:
                continue
        raise RuntimeError(f"rate-limit bucket {key} is too contended")

    # EAB keys -------------------------------------------------------------------------

    def add_eab_key(self, key: EabKey) -> bool:
        """False if the key ID is taken."""
        try:
            with self._tx() as c:
                c.execute(
                    eab_keys.insert().values(
                        kid=key.kid, hmac_key=key.hmac_key, created=to_us(key.created)
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    @staticmethod
    def _eab(row: Any) -> EabKey:
        return EabKey(
            kid=row.kid,
            hmac_key=row.hmac_key,
            created=from_us(row.created),
            revoked=_opt_time(row.revoked),
            account_id=row.account_id,
        )

    def eab_key(self, kid: str) -> EabKey | None:
        with self._tx() as c:
            row = c.execute(sa.select(eab_keys).where(eab_keys.c.kid == kid)).first()
        return None if row is None else self._eab(row)

    def eab_keys(self) -> list[EabKey]:
        with self._tx() as c:
            rows = c.execute(sa.select(eab_keys).order_by(eab_keys.c.created)).all()
        return [self._eab(r) for r in rows]

    def revoke_eab_key(self, kid: str, now: datetime) -> bool:
        with self._tx() as c:
            res = c.execute(
                eab_keys.update()
                .where(eab_keys.c.kid == kid, eab_keys.c.revoked.is_(None))
                .values(revoked=to_us(now))
            )
            return bool(res.rowcount == 1)

    def bind_eab_key(self, kid: str, account_id: str) -> bool:
        """Bind an unrevoked, unbound key to an account, once (compare-and-set)."""
        with self._tx() as c:
            res = c.execute(
                eab_keys.update()
                .where(
                    eab_keys.c.kid == kid,
                    eab_keys.c.account_id.is_(None),
                    eab_keys.c.revoked.is_(None),
                )
                .values(account_id=account_id)
            )
            return bool(res.rowcount == 1)

    # CRLs -----------------------------------------------------------------------------

    def crl(self, shard: int) -> CrlRecord | None:
        with self._tx() as c:
            row = c.execute(sa.select(crls).where(crls.c.shard == shard)).first()
        if row is None:
            return None
        return CrlRecord(row.shard, row.number, from_us(row.this_update), bytes(row.der))

    def save_crl(self, rec: CrlRecord) -> bool:
        """Store shard's CRL if its number is one past the stored one (or the first)."""
        values = {"number": rec.number, "this_update": to_us(rec.this_update), "der": rec.der}
        try:
            with self._tx() as c:
                if rec.number == 1:
                    c.execute(crls.insert().values(shard=rec.shard, **values))
                    return True
                res = c.execute(
                    crls.update()
                    .where(crls.c.shard == rec.shard, crls.c.number == rec.number - 1)
                    .values(**values)
                )
                return bool(res.rowcount == 1)
        except sa.exc.IntegrityError:
            return False

    def revoked_certificates(self, unexpired_at: datetime) -> list[CertificateRecord]:
        """Revoked certificates that have not expired yet: what a CRL must list."""
        with self._tx() as c:
            rows = c.execute(
                sa.select(certificates).where(
                    certificates.c.revoked_at.is_not(None),
                    certificates.c.not_after > to_us(unexpired_at),
                )
            ).all()
        return [self._certificate(r) for r in rows]

    # ARI --------------------------------------------------------------------------------

    def replacement(self, cert_id: str) -> str | None:
        """The order that replaces this certificate, if any."""
        with self._raw() as c:
            row = c.one("SELECT replaced_by FROM certificates WHERE id = ?", (cert_id,))
        return None if row is None or row[0] is None else str(row[0])

    def claim_replacement(self, cert_id: str, order_id: str, previous: str | None) -> bool:
        """Record `order_id` as the certificate's replacement; `previous` is the failed
        order that held the claim before (compare-and-set), or None for the first."""
        held = "replaced_by IS NULL" if previous is None else "replaced_by = ?"
        with self._raw() as c:
            changed = c.run(
                f"UPDATE certificates SET replaced_by = ? WHERE id = ? AND {held}",
                (order_id, cert_id) if previous is None else (order_id, cert_id, previous),
            )
        return changed == 1

    def ari_window_start(self, cert_id: str) -> datetime | None:
        with self._raw() as c:
            row = c.one("SELECT ari_window_start FROM certificates WHERE id = ?", (cert_id,))
        return None if row is None else _opt_time(row[0])

    def move_ari_window(self, cert_id: str, start: datetime) -> None:
        with self._raw() as c:
            c.run(
                "UPDATE certificates SET ari_window_start = ? WHERE id = ?",
                (to_us(start), cert_id),
            )

    # profiles ---------------------------------------------------------------------------

    def authz_profiles(self, ids: Sequence[str]) -> dict[str, str]:
        """The profile each authorization was made for (absent: the default profile)."""
        if not ids:
            return {}
        with self._raw() as c:
            marks = _marks(len(ids))
            rows = c.all(
                f"SELECT id, profile FROM authorizations "
                f"WHERE profile IS NOT NULL AND id IN ({marks})",
                tuple(ids),
            )
        return {r[0]: r[1] for r in rows}

"""Accounts with their nonces, EAB keys and the CA's settings."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from acmekit.database import from_us, to_us
from acmekit.protocol.messages import AccountStatus
from acmekit.server.records import AccountRecord, EabKey, positional
from acmekit.server.repos.base import (
    Ahead,
    Database,
    Repository,
    RowJson,
    col_list,
    loads,
    members,
    opt_time,
)
from acmekit.server.schema import (
    account_prior_keys,
    accounts,
    eab_keys,
    settings,
    used_nonces,
)

_INSERT_NONCE = "INSERT INTO used_nonces (nonce, issued) VALUES (?, ?)"

_account_status = members(AccountStatus)
_make_account = positional(AccountRecord)


# Every authenticated request reads its account, and decoding the row (two JSON texts, a
# time, the record) costs more than SQLite's SELECT: rows seen before are decoded once.
# Keyed by the whole row as read now (one JSON text of `accounts`' columns, in order:
# RowJson), so what another process changed is a new key.
@lru_cache(maxsize=1024)
def _account_from(text: str) -> AccountRecord:
    row = loads(text)
    return _make_account(
        row[0],
        row[1],
        loads(row[2]),
        tuple(loads(row[3])),
        _account_status(row[4]),
        from_us(row[5]),
        row[6],
    )


class AccountRepository(Repository):
    """Accounts, the nonces their requests redeem, EAB keys, and settings."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        row = RowJson(self._dialect).text(col_list(accounts))
        self._by_id = f"SELECT {row} FROM accounts WHERE id = ?"
        self._by_thumbprint = f"SELECT {row} FROM accounts WHERE thumbprint = ?"
        # PostgreSQL runs a data-modifying WITH whether or not the query reads it: the
        # nonce is recorded and the account read in one statement, one round trip (a
        # used nonce fails it with a unique violation, as the plain INSERT does). SQLite
        # has no DML in WITH.
        self._redeem_and_read = f"WITH n AS ({_INSERT_NONCE}) {self._by_id}"

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

    def redeem_nonce(self, nonce: str, issued: datetime) -> bool:
        """Record `nonce` as used; False if it was used before (by any process)."""
        try:
            self._run(_INSERT_NONCE, (nonce, to_us(issued)))
        except self._integrity:
            return False
        return True

    def redeem_nonce_for(
        self,
        nonce: str,
        issued: datetime,
        account_id: str | None,
        ahead: Sequence[Ahead[Any]] = (),
    ) -> tuple[bool, AccountRecord | None]:
        """`redeem_nonce`, and in the same transaction the account `account_id` (if any).
        With an account, the handler's reads `ahead` go in the same round trip on
        PostgreSQL (`Repository._with_ahead`): skipped if the nonce was used."""
        try:
            if account_id is None:
                self._run(_INSERT_NONCE, (nonce, to_us(issued)))
                row = None
            elif self._postgres:
                params = (nonce, to_us(issued), account_id)
                row = self._with_ahead(self._redeem_and_read, params, ahead)
            else:
                with self._raw() as c:
                    c.run(_INSERT_NONCE, (nonce, to_us(issued)))
                    row = c.one(self._by_id, (account_id,))
        except self._integrity:
            return False, None
        return True, None if row is None else _account_from(row[0])

    def prune_nonces(self, issued_before: datetime) -> int:
        with self._tx() as c:
            res = c.execute(used_nonces.delete().where(used_nonces.c.issued < to_us(issued_before)))
            return int(res.rowcount)

    def account(self, account_id: str, ahead: Sequence[Ahead[Any]] = ()) -> AccountRecord | None:
        """The account; on PostgreSQL the handler's reads `ahead` in the same round trip
        (`Repository._with_ahead`: reads only, each on its own snapshot as before)."""
        if ahead and self._postgres:
            row = self._with_ahead(self._by_id, (account_id,), ahead)
        else:  # nothing to send with it (SQLite: each read made where the handler reads)
            row = self._one(self._by_id, (account_id,))
        return None if row is None else _account_from(row[0])

    def account_by_thumbprint(self, thumb: str) -> AccountRecord | None:
        row = self._one(self._by_thumbprint, (thumb,))
        return None if row is None else _account_from(row[0])

    def add_account(self, rec: AccountRecord) -> AccountRecord:
        """Insert; if another request registered the same key first, return that one."""
        found = self._inserted(rec, lambda c: True)
        assert found is not None  # nothing before the insert to say no
        return found

    def _inserted(
        self, rec: AccountRecord, first: Callable[[Connection], bool]
    ) -> AccountRecord | None:
        """The account inserted in a transaction after `first` (None, and nothing
        written, where `first` says no); the account of the same key where another
        request registered it first."""
        try:
            with self._tx() as c:
                if not first(c):
                    return None
                c.execute(_account_insert(rec))
        except sa.exc.IntegrityError:
            existing = self.account_by_thumbprint(rec.thumbprint)
            if existing is None:
                raise
            return existing
        return rec

    def add_bound_account(
        self, rec: AccountRecord, config_hmac: str | None = None
    ) -> AccountRecord | None:
        """`add_account` for an account with an EAB key (`rec.eab_kid`), binding the key
        to it in the same transaction: None if the key is bound already or revoked.
        RFC 8555 §7.3.4: a key binds one account. The binding is a compare-and-set on
        the key's `eab_keys` row, so it holds across requests and processes; a key from
        the configuration file (`config_hmac`, its HMAC key) gets its row here, bound
        as it is made. Were the account's insert to fail, the binding is rolled back
        with it: no key is spent on an account that does not exist."""
        kid = rec.eab_kid
        if kid is None:
            raise ValueError("add_bound_account needs an account with an EAB key ID")
        return self._inserted(rec, lambda c: _bind(c, kid, rec, config_hmac))

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
        """Set the contact URLs, the status, or both, in one statement."""
        if contact is None and status is None:
            return
        update = accounts.update().where(accounts.c.id == account_id)
        if contact is not None:
            update = update.values(contact=json.dumps(list(contact)))
        if status is not None:
            update = update.values(status=str(status))
        # A status change (a deactivation, §7.3.6; the operator's) on disk when this
        # returns: lost with the power, an account its holder gave up, perhaps for a
        # stolen key, would act again (docs/decisions.md, "Synced commits").
        with self._tx() if status is None else self._durable_tx() as c:
            c.execute(update)

    def change_account_key(
        self, account_id: str, jwk: dict[str, str], thumb: str, now: datetime | None = None
    ) -> bool:
        """Swap the key, keeping the old one's thumbprint (`prior_thumbprints`); False if
        another account holds the new key already. On disk when this returns: a
        rollover lost with the power would give the account back to the old key, which
        its holder may have replaced because it was stolen (§7.3.5)."""
        try:
            with self._durable_tx() as c:
                old = c.execute(
                    sa.select(accounts.c.thumbprint).where(accounts.c.id == account_id)
                ).scalar()
                if old is not None and old != thumb:
                    c.execute(
                        account_prior_keys.delete().where(
                            (account_prior_keys.c.account_id == account_id)
                            & (account_prior_keys.c.thumbprint == old)
                        )
                    )
                    c.execute(
                        account_prior_keys.insert().values(
                            account_id=account_id,
                            thumbprint=old,
                            replaced=to_us(now) if now is not None else 0,
                        )
                    )
                c.execute(
                    accounts.update()
                    .where(accounts.c.id == account_id)
                    .values(jwk=json.dumps(jwk), thumbprint=thumb)
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def prior_thumbprints(self, account_id: str) -> list[str]:
        """Thumbprints of the keys the account replaced, the most recent first."""
        with self._tx() as c:
            rows = c.execute(
                sa.select(account_prior_keys.c.thumbprint)
                .where(account_prior_keys.c.account_id == account_id)
                .order_by(account_prior_keys.c.replaced.desc())
            ).scalars()
            return [str(t) for t in rows]

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
            revoked=opt_time(row.revoked),
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
        """Revoke an unbound key once. On disk when this returns: a revoked key that a
        power loss brought back could still bind a new account."""
        with self._durable_tx() as c:
            res = c.execute(
                eab_keys.update()
                .where(eab_keys.c.kid == kid, eab_keys.c.revoked.is_(None))
                .values(revoked=to_us(now))
            )
            return bool(res.rowcount == 1)


def _account_insert(rec: AccountRecord) -> Any:
    return accounts.insert().values(
        id=rec.id,
        thumbprint=rec.thumbprint,
        jwk=json.dumps(rec.jwk),
        contact=json.dumps(list(rec.contact)),
        status=str(rec.status),
        created=to_us(rec.created),
        eab_kid=rec.eab_kid,
    )


def _bind(c: Connection, kid: str, rec: AccountRecord, config_hmac: str | None) -> bool:
    """Bind `kid` to the account `rec` in the transaction `c`, once. A configuration
    key's row is inserted bound (no conflict error to abort the transaction with: on
    PostgreSQL a concurrent insert of the same kid waits for the first to commit or
    roll back); a row that exists already, a database key's or a configuration key's,
    binds only while unbound and unrevoked (compare-and-set)."""
    if config_hmac is not None:
        values = {
            "kid": kid,
            "hmac_key": config_hmac,
            "created": to_us(rec.created),
            "account_id": rec.id,
        }
        insert = pg_insert if c.dialect.name == "postgresql" else sqlite_insert
        once = insert(eab_keys).values(**values).on_conflict_do_nothing()
        # RETURNING, not rowcount: the driver reports no count for an INSERT here.
        if c.execute(once.returning(eab_keys.c.kid)).first() is not None:
            return True
    res = c.execute(
        eab_keys.update()
        .where(
            eab_keys.c.kid == kid,
            eab_keys.c.account_id.is_(None),
            eab_keys.c.revoked.is_(None),
        )
        .values(account_id=rec.id)
    )
    return bool(res.rowcount == 1)

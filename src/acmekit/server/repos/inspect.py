"""Read-only queries for the operator's commands (`acmekit server certs / accounts /
orders`): lists and counts over the CA's tables, in SQLAlchemy Core through the store's
`Database.tx`. Nothing here is on the request path, and nothing writes: the changes an
operator makes (revocation, deactivation) go through the repositories' own methods.

Listing by name reads each candidate's identifiers (a JSON text): no index serves it,
so it scans the certificates table (narrowed first by any other filter given).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from acmekit.database import from_us, to_us
from acmekit.protocol.messages import AccountStatus
from acmekit.server.records import AccountRecord, CertificateRecord, OrderRecord
from acmekit.server.repos.base import Database, ids_load, json_or_none, opt_time
from acmekit.server.repos.certificates import certificate_record
from acmekit.server.schema import (
    UNDECIDED,
    accounts,
    authorizations,
    certificates,
    orders,
)


def _like_escaped(text: str) -> str:
    """`text` as a LIKE pattern matching itself (with `\\` as the escape character)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# A certificate counts as issued once its PEM is stored, or its precertificate signed
# (RFC 6962 §3.1; Baseline Requirements §7.1.2.9): a bare reservation does not.
_ISSUED = sa.or_(certificates.c.pem.is_not(None), certificates.c.precert.is_not(None))


@dataclass(frozen=True)
class CertificateFilter:
    """What `certs list` selects: every given condition holds."""

    name: str | None = None  # a SAN, exactly (lower case)
    account_id: str | None = None
    expiring_before: datetime | None = None  # unexpired at `now`, expiring by then
    revoked: bool | None = None  # True: revoked only; False: unrevoked only
    limit: int = 100


def list_certificates(
    db: Database, where: CertificateFilter, now: datetime
) -> list[CertificateRecord]:
    """Issued certificates matching `where`, newest first, at most `where.limit`."""
    query = sa.select(certificates).where(_ISSUED)
    if where.account_id is not None:
        query = query.where(certificates.c.account_id == where.account_id)
    if where.expiring_before is not None:
        query = query.where(
            certificates.c.not_after > to_us(now),
            certificates.c.not_after <= to_us(where.expiring_before),
        )
    if where.revoked is True:
        query = query.where(certificates.c.revoked_at.is_not(None))
    elif where.revoked is False:
        query = query.where(certificates.c.revoked_at.is_(None))
    if where.name is not None:
        # The identifiers as `ids_json` writes them: the value is a JSON string, closed
        # by its quote, so the pattern matches that value exactly (LIKE ignores case on
        # SQLite; names are stored in lower case, and the check below is exact anyway).
        value = _like_escaped(json.dumps(where.name))
        query = query.where(certificates.c.identifiers.like(f'%"value": {value}%', escape="\\"))
    query = query.order_by(certificates.c.issued.desc(), certificates.c.id.desc())
    query = query.limit(where.limit)
    with db.tx() as conn:
        rows = conn.execute(query).all()
    found = [certificate_record(r) for r in rows]
    if where.name is not None:
        found = [c for c in found if any(i.value == where.name for i in c.identifiers)]
    return found


_ACCOUNT_PAGE = 1000


def list_accounts(db: Database, contact: str | None, limit: int) -> list[AccountRecord]:
    """Accounts, newest first; with `contact`, those one of whose contact URLs holds it
    (ignoring case).

    The contacts are a JSON text with non-ASCII characters, quotes and backslashes
    escaped (`\\u00fc`): the database's LIKE narrows the rows only by a needle that JSON
    writes as it is, and the contacts decoded decide; `limit` counts those that match
    (a row the LIKE let through may not). Rows are read a page at a time, newest first,
    until `limit` match: never the whole table at once."""
    query = sa.select(accounts)
    needle = None if contact is None else contact.lower()
    if needle is not None and needle.isascii() and json.dumps(needle)[1:-1] == needle:
        pattern = f"%{_like_escaped(needle)}%"
        query = query.where(sa.func.lower(accounts.c.contact).like(pattern, escape="\\"))
    query = query.order_by(accounts.c.created.desc(), accounts.c.id.desc())
    if needle is None:
        with db.tx() as conn:
            return [_account(r) for r in conn.execute(query.limit(limit))]
    found: list[AccountRecord] = []
    after: tuple[int, str] | None = None
    while True:
        page = query
        if after is not None:  # older than the last row read (the order's keys)
            created, last_id = after
            page = page.where(
                sa.or_(
                    accounts.c.created < created,
                    sa.and_(accounts.c.created == created, accounts.c.id < last_id),
                )
            )
        with db.tx() as conn:
            rows = conn.execute(page.limit(_ACCOUNT_PAGE)).all()
        for row in rows:
            account = _account(row)
            if any(needle in c.lower() for c in account.contact):
                found.append(account)
                if len(found) == limit:
                    return found
        if len(rows) < _ACCOUNT_PAGE:
            return found
        after = (rows[-1].created, rows[-1].id)


def _account(row: Any) -> AccountRecord:
    return AccountRecord(
        id=row.id,
        thumbprint=row.thumbprint,
        jwk=json.loads(row.jwk),
        contact=tuple(json.loads(row.contact)),
        status=AccountStatus(row.status),
        created=from_us(row.created),
        eab_kid=row.eab_kid,
    )


@dataclass(frozen=True)
class AccountCounts:
    orders: int
    certificates: int  # issued (a PEM stored, or a precertificate signed)
    revoked: int  # of those, revoked


def account_counts(db: Database, account_id: str) -> AccountCounts:
    with db.tx() as conn:
        n_orders = conn.execute(
            sa.select(sa.func.count()).select_from(orders).where(orders.c.account_id == account_id)
        ).scalar_one()
        issued = sa.and_(certificates.c.account_id == account_id, _ISSUED)
        n_certs = conn.execute(
            sa.select(sa.func.count()).select_from(certificates).where(issued)
        ).scalar_one()
        n_revoked = conn.execute(
            sa.select(sa.func.count())
            .select_from(certificates)
            .where(issued, certificates.c.revoked_at.is_not(None))
        ).scalar_one()
    return AccountCounts(int(n_orders), int(n_certs), int(n_revoked))


def list_orders(db: Database, account_id: str, limit: int) -> list[OrderRecord]:
    """The account's orders, newest first (the (account_id, created) index serves it)."""
    query = (
        sa.select(orders)
        .where(orders.c.account_id == account_id)
        .order_by(orders.c.created.desc(), orders.c.id.desc())
        .limit(limit)
    )
    with db.tx() as conn:
        rows = conn.execute(query).all()
    return [
        OrderRecord(
            id=r.id,
            account_id=r.account_id,
            identifiers=ids_load(r.identifiers),
            authz_ids=tuple(json.loads(r.authz_ids)),
            expires=from_us(r.expires),
            created=from_us(r.created),
            not_before=opt_time(r.not_before),
            not_after=opt_time(r.not_after),
            profile=r.profile,
            replaces=r.replaces,
            csr=None if r.csr is None else bytes(r.csr),
            finalize_started=opt_time(r.finalize_started),
            error=json_or_none(r.error),
            certificate_id=r.certificate_id,
        )
        for r in rows
    ]


def pending_authorization_ids(db: Database, account_id: str, now: datetime) -> Sequence[str]:
    """The account's authorizations that are pending as RFC 8555 §7.1.6 derives it:
    stored pending, unexpired, and no challenge valid or invalid (`decided_by`, as the
    pending count reads it: on ix_authz_pending, the undecided rows only)."""
    query = sa.select(authorizations.c.id).where(
        authorizations.c.account_id == account_id,
        sa.text(UNDECIDED),
        authorizations.c.expires > to_us(now),
    )
    with db.tx() as conn:
        return [str(i) for i in conn.execute(query).scalars()]

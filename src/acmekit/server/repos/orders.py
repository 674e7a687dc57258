"""Orders with their authorizations, challenges and finalize claims."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from acmekit.database import from_us, to_us
from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
)
from acmekit.server.records import (
    AuthorizationRecord,
    CertificateRecord,
    ChallengeRecord,
    OrderRecord,
    ValidationEvidence,
    positional,
)
from acmekit.server.repos.base import (
    Ahead,
    Cursor,
    Database,
    Repository,
    RowJson,
    Texts,
    col_list,
    cols,
    identifier_type,
    ids_json,
    json_or_none,
    loads,
    marks,
    members,
    opt_time,
)
from acmekit.server.repos.certificates import (
    CLAIM_AND_RESERVE,
    insert_reservation,
    reservation_values,
)
from acmekit.server.schema import UNDECIDED, authorizations, challenges, metadata, orders

_CHALLENGE_COLS = cols(challenges)

_INSERT_AUTHZ = (
    "INSERT INTO authorizations (id, account_id, identifier_type, identifier_value, "
    "wildcard, stored_status, expires, profile, decided_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# One INSERT of an authorization's challenges, by their count.
_INSERT_CHALLENGES = Texts(
    lambda n: (
        "INSERT INTO challenges (id, authz_id, type, token, status) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?)"] * n)
    )
)


# RFC 9773 §5: one order replaces a certificate. Its claim, by compare-and-set on the
# failed order that held it (none: unclaimed).
def _claim_statement(claim: tuple[str, str | None], order_id: str) -> tuple[str, tuple[Any, ...]]:
    cert_id, previous = claim
    if previous is None:
        return _CLAIM + "IS NULL", (order_id, cert_id)
    return _CLAIM + "= ?", (order_id, cert_id, previous)


_CLAIM = "UPDATE certificates SET replaced_by = ? WHERE id = ? AND replaced_by "
# PostgreSQL: each of an order's writes after its claim, made only while the claim is the
# order's (the certificate's id and the order's, its last two parameters). A claim lost
# takes no row and the writes after it then write nothing: no statement fails, so the
# server logs no ERROR and rolls nothing back for a race that is expected (RFC 9773 §5
# has the loser refused with alreadyReplaced). A statement that failed on purpose had the
# rest skipped, at the cost of an ERROR line in the server's log for every lost race.
_CLAIM_HELD = "EXISTS (SELECT 1 FROM certificates WHERE id = ? AND replaced_by = ?)"
# Rows of parameters only: a statement with anything after them (ON CONFLICT, RETURNING)
# is no form `_while_claim_held` knows, and is refused rather than cut short.
_INSERT_VALUES = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES ((?:\((?:\?, )*\?\)(?:, )?)+)")
# (SQLAlchemy's dialect constructors are not annotated.)
_POSTGRES: sa.Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]


def _while_claim_held(text: str) -> str:
    """`text` (one of the order's INSERT ... VALUES or its marks' UPDATE) made only while
    the claim is held. The VALUES become a SELECT's rows, each value cast to its column's
    type: unlike the VALUES of an INSERT, a SELECT's does not take its parameters'
    types from the columns written (a NULL would be text, for a BIGINT column)."""
    found = _INSERT_VALUES.fullmatch(text)
    if found is None:  # the marks' UPDATE, whose WHERE takes one more condition
        if not (text.startswith("UPDATE ") and " WHERE " in text and " RETURNING " not in text):
            raise ValueError(f"no form made while a claim is held: {text}")
        return f"{text} AND {_CLAIM_HELD}"
    table, names, rows = found.groups()
    columns = metadata.tables[table].c
    typed = ", ".join(f"CAST(? AS {_cast_type(columns[name])})" for name in names.split(", "))
    count = rows.count("(")
    values = ", ".join([f"({typed})"] * count)
    return f"INSERT INTO {table} ({names}) SELECT * FROM (VALUES {values}) AS v WHERE {_CLAIM_HELD}"


def _cast_type(column: sa.Column[Any]) -> str:
    """The type a value for `column` is cast to: a text's without its length. An
    explicit cast to VARCHAR(n) cuts a longer text short without a word, where the
    INSERT's own assignment to the column refuses it, as an unclaimed order's does."""
    kind = sa.String() if isinstance(column.type, sa.String) else column.type
    return str(kind.compile(dialect=_POSTGRES))


_WHILE_CLAIM_HELD = Texts(_while_claim_held)


class _ClaimLost(Exception):
    """SQLite: the replacement's claim taken by another order; the transaction rolled back."""


_RENEWAL_AUTHZ_EXISTS = "SELECT 1 FROM authorizations WHERE id = ? AND renewal_order_id IS NOT NULL"
# An authorization may already serve an earlier renewal order: that one stays. By the
# count of ids marked.
_MARK_RENEWAL_AUTHZS = Texts(
    lambda n: (
        "UPDATE authorizations SET renewal_order_id = ? "
        f"WHERE renewal_order_id IS NULL AND id IN ({marks(n)})"
    )
)
# Pending as §7.1.6 derives it: stored pending, not expired, no challenge valid or invalid
# (`decided_by`, set with the challenge's outcome). Planned on ix_authz_pending, whose
# predicate the WHERE carries word for word: the rows read are the undecided ones.
_PENDING_AUTHZS = (
    "SELECT COUNT(*), MIN(a.expires) FROM authorizations a "
    f"WHERE a.account_id = ? AND {UNDECIDED} AND a.expires > ?"
)
# Whether an account has met a challenge type (ix_authz_reuse leads with account_id).
_ACCOUNT_VALIDATED = (
    "SELECT 1 FROM authorizations a JOIN challenges c ON c.authz_id = a.id "
    "WHERE a.account_id = ? AND c.type = ? AND c.status = ? LIMIT 1"
)
_CHALLENGE_BY_ID = f"SELECT {_CHALLENGE_COLS} FROM challenges WHERE id = ?"
_INSERT_ORDER = (
    "INSERT INTO orders (id, account_id, identifiers, authz_ids, expires, created, "
    "not_before, not_after, profile, replaces) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The columns an authorization's record is made of, and its challenges' (their authz_id
# is the authorization's): not the evidence, which `evidence` reads.
_AUTHZ_FIELDS = [
    "a.id",
    "a.account_id",
    "a.identifier_type",
    "a.identifier_value",
    "a.wildcard",
    "a.stored_status",
    "a.expires",
    "a.profile",
    "a.renewal_order_id",
]
_CHALLENGE_FIELDS = [
    "c.id",
    "c.type",
    "c.token",
    "c.status",
    "c.validated",
    "c.started",
    "c.error",
    "c.account_uri",
]


# Stored pending, written in, not a parameter: SQLite weighs ix_authz_pending for every
# statement on authorizations by account_id, and a parameter it compares with that index's
# `stored_status = 'pending'` makes it prepare the statement again at each binding (the
# reusable reads took seven times as long, newOrder 209,000 instructions more).
_STORED_PENDING = f"stored_status = '{AuthorizationStatus.PENDING}'"


class _Reads:
    """The statements that read orders and authorizations, in a dialect: each row one
    JSON text (RowJson), an authorization's with its challenges nested."""

    def __init__(self, dialect: str) -> None:
        j = RowJson(dialect)
        chs = j.rows(_CHALLENGE_FIELDS, "FROM challenges c WHERE c.authz_id = a.id")
        authz = j.text([*_AUTHZ_FIELDS, chs])
        order = j.text(col_list(orders, "o", skip=("csr",)))  # the CSR as its own column
        authzs = f"SELECT {authz} FROM authorizations a WHERE a.id IN "
        self.authzs = Texts(lambda n: f"{authzs}({marks(n)})")  # by the count of ids
        # The candidates, newest first (their challenges nested: no join to order).
        self.reusable = (
            f"SELECT {authz} FROM authorizations a WHERE a.account_id = ? "
            "AND a.identifier_value = ? AND a.identifier_type = ? AND a.wildcard = ? "
            f"AND a.{_STORED_PENDING} AND a.expires > ? ORDER BY a.expires DESC, a.id LIMIT 5"
        )

        # The same candidates of several names in one statement, one row a name: its
        # index in the names given and, as a JSON array of their texts, what `reusable`
        # reads for it (the same subquery, correlated with the name's row, newest first,
        # five at most). The names come as one JSON array of [value, type, wildcard] on
        # SQLite (json_each), as three arrays on PostgreSQL (unnest): one text for any
        # count, prepared once.
        def per_name(value: str, kind: str, wildcard: str) -> str:
            return (
                f"SELECT {authz} AS t, a.expires AS e, a.id AS i FROM authorizations a "
                f"WHERE a.account_id = ? AND a.identifier_value = {value} "
                f"AND a.identifier_type = {kind} AND a.wildcard = {wildcard} "
                f"AND a.{_STORED_PENDING} AND a.expires > ? ORDER BY a.expires DESC, a.id LIMIT 5"
            )

        if j.sqlite:
            # SQLite 3.40 takes no ORDER BY in an aggregate: it feeds the subquery's rows
            # in their order, which SQL does not promise, so the reader sorts them again.
            # json_extract, not `->>`: that operator came with SQLite 3.38, and the store
            # runs on 3.35 or later (RETURNING, repos/buckets.py): on 3.37 (Ubuntu 22.04's)
            # `->>` is a syntax error, and every newOrder of three names or more failed.
            one = per_name(*(f"json_extract(v.value, '$[{i}]')" for i in range(3)))
            self.reusable_of = (
                f"SELECT v.key, (SELECT json_group_array(s.t) FROM ({one}) s) FROM json_each(?) v"
            )
        else:
            one = per_name("v.value", "v.kind", "v.wildcard")
            self.reusable_of = (
                "SELECT v.n - 1, (SELECT CAST(COALESCE(json_agg(s.t ORDER BY s.e DESC, s.i), "
                f"'[]') AS text) FROM ({one}) s) FROM unnest(CAST(? AS text[]), CAST(? AS "
                "text[]), CAST(? AS boolean[])) WITH ORDINALITY v(value, kind, wildcard, n)"
            )
        # A challenge's authorization, by the challenge's id.
        self.of_challenge = (
            f"SELECT {authz} FROM authorizations a "
            "WHERE a.id = (SELECT authz_id FROM challenges WHERE id = ?)"
        )
        self.order = f"SELECT {order}, o.csr FROM orders o WHERE o.id = ?"
        # The order's row on each of its authorizations' rows (`authz_ids`, a JSON
        # array: SQLite's json_each and PostgreSQL's json_array_elements_text give its
        # elements), in no set order: the caller puts them in the order's (a sort here
        # cost SQLite a temporary B-tree a read).
        elements = (
            "json_each(o.authz_ids) j"
            if j.sqlite
            else "LATERAL json_array_elements_text(CAST(o.authz_ids AS json)) j(value)"
        )
        self.order_with_authzs = (
            f"SELECT {order}, o.csr, CASE WHEN a.id IS NULL THEN NULL ELSE {authz} END "
            f"FROM orders o LEFT JOIN {elements} ON true "
            "LEFT JOIN authorizations a ON a.id = j.value WHERE o.id = ?"
        )
        # The same for a poll: an order with a certificate, an error or a finalize claim
        # has a status and an error of its own (RFC 8555 §7.1.6; messages.order_status,
        # OrderView.error), so its authorizations are joined only while it has none of
        # the three: an empty array in place of `authz_ids` joins none, one row.
        own = (
            "CASE WHEN o.certificate_id IS NULL AND o.error IS NULL "
            "AND o.finalize_started IS NULL THEN o.authz_ids ELSE '[]' END"
        )
        elements_open = (
            f"json_each({own}) j"
            if j.sqlite
            else f"LATERAL json_array_elements_text(CAST({own} AS json)) j(value)"
        )
        self.order_poll = self.order_with_authzs.replace(elements, elements_open)


_READS = {dialect: _Reads(dialect) for dialect in ("sqlite", "postgresql")}
# The fewest names whose reusable candidates `reusable_authorizations_of` reads in one
# statement: on PostgreSQL two (a round trip saved costs more than the statement's
# instructions), on SQLite three (for two, the names' own statements cost fewer
# instructions). Measured, docs/decisions.md ("newOrder of many names").
_TOGETHER_LEAST = {"sqlite": 3, "postgresql": 2}


def _newest_first(authz: AuthorizationRecord) -> tuple[float, str]:
    """`_Reads.reusable`'s order: the latest expiry first, then by id."""
    return (-authz.expires.timestamp(), authz.id)


_authz_status = members(AuthorizationStatus)
# The challenge statuses that decide an authorization (§7.1.6), that `decided_by` records.
_DECIDING = frozenset((ChallengeStatus.VALID, ChallengeStatus.INVALID))
_challenge_status = members(ChallengeStatus)
_challenge_type = members(ChallengeType)
# The same lookups as dicts, for the decoders of a row's text: `dict.get` is a call into
# C where `members`' function is a Python frame, eight an authorization (a value not
# found still goes through `members`, which raises for it).
_AUTHZ_STATUSES = {m.value: m for m in AuthorizationStatus}
_CHALLENGE_STATUSES = {m.value: m for m in ChallengeStatus}
_CHALLENGE_TYPES = {m.value: m for m in ChallengeType}
_IDENTIFIER_TYPES = {m.value: m for m in IdentifierType}


_make_order = positional(OrderRecord)
_make_authorization = positional(AuthorizationRecord)
_make_challenge = positional(ChallengeRecord)
_by_type = itemgetter(1)


def _order_of(row: Sequence[Any], csr: bytes | None) -> OrderRecord:
    """An order from `orders`' columns, in order (`csr` given apart). `opt_time`,
    `json_or_none` and `ids_load` written out: a Python call each, six an order read."""
    identifiers = []
    for ident in loads(row[2]):
        kind = ident["type"]
        identifiers.append(
            Identifier(_IDENTIFIER_TYPES.get(kind) or identifier_type(kind), ident["value"])
        )
    return _make_order(
        row[0],
        row[1],
        tuple(identifiers),
        tuple(loads(row[3])),
        from_us(row[4]),
        from_us(row[5]),
        None if row[6] is None else from_us(row[6]),
        None if row[7] is None else from_us(row[7]),
        row[8],
        row[9],
        csr,
        None if row[11] is None else from_us(row[11]),
        None if row[12] is None else dict(loads(row[12])),
        row[13],
    )


# An order and an authorization are read several times a certificate (the authorization's
# GET, the challenge, the polls, finalize), and decoding them (times, JSON, a record per
# challenge) costs more than SQLite's SELECT: texts seen before are decoded once. Keyed by
# the row as read now, so a change made by any process is a new key.
@lru_cache(maxsize=1024)
def _order_from(text: str, csr: bytes | None) -> OrderRecord:
    """An order from its JSON text (`_Reads.order`)."""
    return _order_of(loads(text), csr)


def _challenge_from(row: Sequence[Any]) -> ChallengeRecord:
    """A challenge from a row of `challenges`' columns, in order."""
    return _make_challenge(
        row[0],
        row[1],
        _challenge_type(row[2]),
        row[3],
        _challenge_status(row[4]),
        opt_time(row[5]),
        json_or_none(row[7]),
        opt_time(row[6]),
        row[8],
    )


@lru_cache(maxsize=2048)
def _authorization_from(text: str) -> AuthorizationRecord:
    """An authorization from its JSON text: `_AUTHZ_FIELDS` and its challenges', these
    in the order of their types (as the type enum sorts: by value)."""
    head = loads(text)
    authz_id, nested = head[0], head[9]
    if isinstance(nested, str):
        nested = loads(nested)
    nested.sort(key=_by_type)
    chs = []  # a loop, not a generator (a function object a call, Python 3.11)
    for c in nested:
        chs.append(
            _make_challenge(
                c[0],
                authz_id,
                _CHALLENGE_TYPES.get(c[1]) or _challenge_type(c[1]),
                c[2],
                _CHALLENGE_STATUSES.get(c[3]) or _challenge_status(c[3]),
                None if c[4] is None else from_us(c[4]),  # opt_time, without the call
                None if c[6] is None else json_or_none(c[6]),
                None if c[5] is None else from_us(c[5]),
                c[7],
            )
        )
    return _make_authorization(
        authz_id,
        head[1],
        Identifier(_IDENTIFIER_TYPES.get(head[2]) or identifier_type(head[2]), head[3]),
        bool(head[4]),
        _AUTHZ_STATUSES.get(head[5]) or _authz_status(head[5]),
        from_us(head[6]),
        tuple(chs),
        head[7],
        head[8] is not None,
    )


def _authorizations_of(rows: Sequence[Any], col: int = 0) -> list[AuthorizationRecord]:
    """Authorizations from rows with their JSON texts in column `col`, in the order they
    first appear; rows without one are skipped (an order naming one authorization twice
    joins it twice)."""
    found: dict[str, AuthorizationRecord] = {}
    for row in rows:
        text = row[col]
        if text is not None:
            authz = _authorization_from(text)
            found.setdefault(authz.id, authz)
    return list(found.values())


# Decoders of `Ahead` reads: the statement's rows and its parameters.


def _first_authorization(rows: Sequence[Any], _params: Sequence[Any]) -> AuthorizationRecord | None:
    return _authorization_from(rows[0][0]) if rows else None


def _reusable_of(rows: Sequence[Any], _params: Sequence[Any]) -> list[AuthorizationRecord]:
    return _authorizations_of(rows)


def _pending_params(account_id: str, now: datetime) -> tuple[Any, ...]:
    return (account_id, to_us(now))


def _pending_of(rows: Sequence[Any], _params: Sequence[Any] = ()) -> tuple[int, datetime | None]:
    """`_PENDING_AUTHZS`' one row: the count, and the first expiry (None for none)."""
    count, first = rows[0]
    return int(count), opt_time(first)


def claimed(rows: Sequence[Any]) -> bool:
    """Whether `claim_statement`'s statement claimed the order."""
    return bool(rows[0][0] == 1)


def _challenge_rows(
    rows: Sequence[Any], params: Sequence[Any]
) -> tuple[ChallengeRecord, AuthorizationRecord] | None:
    return _challenge_and_authorization(params[0], rows[0] if rows else None)


def _challenge_and_authorization(
    challenge_id: str, row: Any
) -> tuple[ChallengeRecord, AuthorizationRecord] | None:
    """The challenge and its authorization from `_Reads.of_challenge`'s row, if any."""
    if row is None:
        return None
    authz = _authorization_from(row[0])
    ch = next((ch for ch in authz.challenges if ch.id == challenge_id), None)
    return None if ch is None else (ch, authz)


def _order_with_authorizations(
    rows: Sequence[Any], _params: Sequence[Any] = ()
) -> tuple[OrderRecord, list[AuthorizationRecord]] | None:
    """The order and its authorizations from `_Reads.order_with_authzs`' or
    `order_poll`'s rows (an `Ahead`'s decoder too)."""
    if not rows:
        return None
    order = _order_from(rows[0][0], rows[0][1])
    found = _authorizations_of(rows, 2)
    if not found:  # a decided order's poll: none joined
        return order, found
    by_id = {a.id: a for a in found}
    return order, [by_id[i] for i in order.authz_ids if i in by_id]


def _reusable_params(
    account_id: str, identifier: Identifier, wildcard: bool, valid_after: datetime
) -> tuple[Any, ...]:
    """`_Reads.reusable`'s parameters: the account's authorizations stored as pending
    for the identifier, still good after `valid_after`."""
    return (
        account_id,
        identifier.value,
        str(identifier.type),
        wildcard,
        to_us(valid_after),
    )


# pending -> processing if no other challenge of its authorization left pending
_START_CHALLENGE = (
    "UPDATE challenges SET status = ?, started = ?, account_uri = ? "
    "WHERE id = ? AND status = ? AND NOT EXISTS (SELECT 1 FROM challenges AS o "
    "WHERE o.authz_id = challenges.authz_id AND o.id <> challenges.id AND o.status <> ?)"
)
_LOCK_AUTHZ_OF_CHALLENGE = (
    "SELECT 1 FROM authorizations WHERE id = "
    "(SELECT authz_id FROM challenges WHERE id = ?) FOR UPDATE"
)


_DECIDED_BY = (
    "decided_by = COALESCE(decided_by, "
    f"(SELECT id FROM challenges WHERE id = ? AND status = '{ChallengeStatus.PROCESSING}'))"
)


def _finish_authz(parts: tuple[bool, bool]) -> str:
    """What a finished challenge sets on its authorization: the challenge that decided
    it (§7.1.6: no longer pending), then (a success's new expiry, the validation's
    evidence)."""
    extend, evidence = parts
    # The challenge if it is processing, as the challenge's UPDATE asks (read before it:
    # on SQLite the statement before, on PostgreSQL the same snapshot), so the two agree;
    # a decision made already is kept (one attempt decides an authorization).
    sets = [_DECIDED_BY]
    if extend:
        sets.append("expires = ?")
    if evidence:
        sets += ["mpic_quorum = ?", "mpic_perspectives = ?", "dnssec_dcv = ?", "dnssec_caa = ?"]
    return (
        f"UPDATE authorizations SET {', '.join(sets)} WHERE id = "
        "(SELECT authz_id FROM challenges WHERE id = ?)"
    )


_FINISH_AUTHZ = Texts(_finish_authz)


class OrderRepository(Repository):
    """Orders, their authorizations and challenges, and who finalizes an order."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._reads = _READS[self._dialect]
        self._together_least = _TOGETHER_LEAST[self._dialect]

    def add_authorization(
        self, authz: AuthorizationRecord, c: Cursor | None = None, profile: str | None = None
    ) -> None:
        """Store `authz`, made for an order of `profile` (None: the default profile)."""
        if c is None:
            self._together(_authorization_inserts(authz, profile))
            return
        for sql, values in _authorization_inserts(authz, profile):
            c.run(sql, values)

    def authorizations(self, ids: Sequence[str]) -> list[AuthorizationRecord]:
        """The authorizations with these ids, in the order given (missing ones skipped)."""
        if not ids:
            return []
        rows = self._all(self._reads.authzs[len(ids)], tuple(ids))
        by_id = {r.id: r for r in _authorizations_of(rows)}
        return [by_id[i] for i in ids if i in by_id]

    def authorization(self, authz_id: str) -> AuthorizationRecord | None:
        """`authorizations([authz_id])`'s statement, its one row read as one (the id is
        the key: at most one row)."""
        row = self._one(self._reads.authzs[1], (authz_id,))
        return None if row is None else _authorization_from(row[0])

    def authorization_ahead(self, authz_id: str) -> Ahead[AuthorizationRecord | None]:
        """`authorization`, to send ahead (`Ahead`)."""
        return Ahead(self._reads.authzs[1], (authz_id,), _first_authorization, self._all)

    def reusable_authorizations(
        self, account_id: str, identifier: Identifier, wildcard: bool, valid_after: datetime
    ) -> list[AuthorizationRecord]:
        """Candidates for reuse (§7.1.3 lets a server reuse authorizations): newest first."""
        params = _reusable_params(account_id, identifier, wildcard, valid_after)
        return _authorizations_of(self._all(self._reads.reusable, params))

    def reusable_authorizations_ahead(
        self, account_id: str, identifier: Identifier, wildcard: bool, valid_after: datetime
    ) -> Ahead[list[AuthorizationRecord]]:
        """`reusable_authorizations`, to send ahead (`Ahead`)."""
        params = _reusable_params(account_id, identifier, wildcard, valid_after)
        return Ahead(self._reads.reusable, params, _reusable_of, self._all)

    def reusable_authorizations_of(
        self, account_id: str, names: Sequence[tuple[Identifier, bool]], valid_after: datetime
    ) -> list[list[AuthorizationRecord]]:
        """`reusable_authorizations` of each (identifier, wildcard) in `names`, in their
        order, in one statement: the same candidates, newest first, as many at most.
        Fewer names than `_TOGETHER_LEAST` are read one statement each, which costs less
        there (docs/decisions.md, "newOrder of many names")."""
        if len(names) < self._together_least:
            read = self.reusable_authorizations
            return [read(account_id, ident, wildcard, valid_after) for ident, wildcard in names]
        after = to_us(valid_after)
        if self._postgres:
            values, kinds, wildcards = [], [], []
            for ident, wildcard in names:
                values.append(ident.value)
                kinds.append(str(ident.type))
                wildcards.append(wildcard)
            params: tuple[Any, ...] = (account_id, after, values, kinds, wildcards)
        else:
            rows = [[ident.value, str(ident.type), int(wildcard)] for ident, wildcard in names]
            params = (account_id, after, json.dumps(rows))
        found: list[list[AuthorizationRecord]] = [[] for _ in names]
        for index, texts in self._all(self._reads.reusable_of, params):
            each = found[index]
            for text in loads(texts):
                each.append(_authorization_from(text))
            if not self._postgres:  # the order SQLite's aggregate does not promise
                each.sort(key=_newest_first)
        return found

    def pending_authorizations(self, account_id: str, now: datetime) -> tuple[int, datetime | None]:
        """How many authorizations of the account are pending, and when the first expires."""
        return _pending_of([self._one(_PENDING_AUTHZS, _pending_params(account_id, now))])

    def pending_authorizations_ahead(
        self, account_id: str, now: datetime
    ) -> Ahead[tuple[int, datetime | None]]:
        """`pending_authorizations`, to send ahead (`Ahead`)."""
        params = _pending_params(account_id, now)
        return Ahead(_PENDING_AUTHZS, params, _pending_of, self._all)

    def account_validated(self, account_id: str, ctype: ChallengeType) -> bool:
        """Whether any challenge of type `ctype` of the account has ever been met."""
        with self._raw() as c:
            return (
                c.one(_ACCOUNT_VALIDATED, (account_id, str(ctype), str(ChallengeStatus.VALID)))
                is not None
            )

    def set_authorization_status(self, authz_id: str, status: AuthorizationStatus) -> None:
        with self._tx() as c:
            c.execute(
                authorizations.update()
                .where(authorizations.c.id == authz_id)
                .values(stored_status=str(status))
            )

    def challenge(self, challenge_id: str) -> ChallengeRecord | None:
        row = self._one(_CHALLENGE_BY_ID, (challenge_id,))
        return None if row is None else _challenge_from(row)

    def challenge_and_authorization(
        self, challenge_id: str
    ) -> tuple[ChallengeRecord, AuthorizationRecord] | None:
        """The challenge and its authorization (with every challenge), in one statement."""
        row = self._one(self._reads.of_challenge, (challenge_id,))  # by key: one at most
        return _challenge_and_authorization(challenge_id, row)

    def challenge_and_authorization_ahead(
        self, challenge_id: str
    ) -> Ahead[tuple[ChallengeRecord, AuthorizationRecord] | None]:
        """`challenge_and_authorization`, to send ahead (`Ahead`)."""
        return Ahead(self._reads.of_challenge, (challenge_id,), _challenge_rows, self._all)

    def start_challenge(self, challenge_id: str, now: datetime, account_uri: str) -> bool:
        """pending -> processing, noting the account URL the client asked under (for a
        resumed validation's CAA check); False if it was not pending, or if another
        challenge of its authorization was started already (RFC 8555 §7.1.6: one attempt
        decides an authorization, and an invalid one stays invalid)."""
        pending = str(ChallengeStatus.PENDING)
        values = (str(ChallengeStatus.PROCESSING), to_us(now), account_uri, challenge_id)
        if not self._postgres:  # SQLite's writers take turns: the UPDATE sees the last
            return self._run(_START_CHALLENGE, (*values, pending, pending)) == 1
        # On PostgreSQL (READ COMMITTED) two processes starting two challenges of one
        # authorization at once each ran the UPDATE on a snapshot without the other's
        # change, on rows of their own: both started. The authorization's row, locked
        # first, makes them take turns, and the UPDATE, a statement of its own after
        # the lock, reads what the other committed. Both go before one Sync: one
        # implicit transaction, the UPDATE run after the lock is taken, on a snapshot
        # of its own, in one round trip where BEGIN, the two and COMMIT took four.
        with self._once() as c:
            _, started = c.pipelined(  # type: ignore[attr-defined]
                [
                    (_LOCK_AUTHZ_OF_CHALLENGE, (challenge_id,)),
                    (_START_CHALLENGE, (*values, pending, pending)),
                ]
            )
        return bool(started == 1)

    def finish_challenge(
        self,
        challenge_id: str,
        now: datetime,
        error: dict[str, Any] | None,
        authz_expires: datetime | None = None,
        evidence: ValidationEvidence | None = None,
    ) -> None:
        """processing -> valid or invalid; a success also extends the authorization.
        `evidence` (MPIC, DNSSEC) is recorded on the authorization either way."""
        status = ChallengeStatus.INVALID if error else ChallengeStatus.VALID
        extend = False
        # The authorization's row, decided by this challenge, goes with the challenge's
        # outcome (one statement on PostgreSQL, one transaction on SQLite): the pending
        # count reads `decided_by`, never the challenges.
        values: list[Any] = [challenge_id]
        if authz_expires is not None and not error:
            extend = True
            values.append(to_us(authz_expires))
        if evidence is not None:
            perspectives = evidence.mpic_perspectives
            values += [
                evidence.mpic_quorum,
                None if perspectives is None else json.dumps(perspectives),
                evidence.dnssec_dcv,
                evidence.dnssec_caa,
            ]
        # the authorization's row; the challenge's row below, not read here
        text = _FINISH_AUTHZ[(extend, evidence is not None)]
        statements: list[tuple[str, Sequence[Any]]] = [(text, (*values, challenge_id))]
        statements.append(
            (
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
        )
        self._together(statements)

    def stale_challenges(self, started_before: datetime) -> list[ChallengeRecord]:
        """Challenges left processing by a process that stopped: recovery re-runs them."""
        with self._tx() as c:
            rows = c.execute(
                sa.select(challenges).where(
                    challenges.c.status == str(ChallengeStatus.PROCESSING),
                    challenges.c.started < to_us(started_before),
                )
            ).all()
        return [_challenge_from(r) for r in rows]

    def restart_challenge(self, challenge_id: str, was: datetime, now: datetime) -> bool:
        """Take over a stale validation; exactly one process wins (compare-and-set)."""
        with self._tx() as c:
            res = c.execute(
                challenges.update()
                .where(challenges.c.id == challenge_id, challenges.c.started == to_us(was))
                .values(started=to_us(now))
            )
            return bool(res.rowcount == 1)

    def add_order(
        self,
        order: OrderRecord,
        new_authzs: Sequence[AuthorizationRecord],
        renewed: Sequence[str] | None = None,
        claim: tuple[str, str | None] | None = None,
    ) -> bool:
        """The order and its new authorizations, committed together. An order with
        `replaces` marks as in renewal the authorizations `renewed` names (by default all
        of the order's). `claim`: the replaced certificate's id and the failed order that
        held its claim (None if unclaimed), taken by compare-and-set in the same
        transaction: False, and nothing written, if another order took it first. Taken
        apart from the order, another process would see a claim whose order is not
        committed yet as one whose order failed, and take it too."""
        statements = [
            w for authz in new_authzs for w in _authorization_inserts(authz, order.profile)
        ]
        statements.append((_INSERT_ORDER, _order_values(order)))
        marked = order.authz_ids if renewed is None else tuple(renewed)
        if claim is None and (order.replaces is None or not marked):
            self._together(statements)
            return True
        # Marking reads the authorizations inserted before it: in sequence, not in one
        # statement (a data-modifying WITH's parts share one snapshot).
        if order.replaces is not None and marked:
            statements.append((_MARK_RENEWAL_AUTHZS[len(marked)], (order.id, *marked)))
        if not self._postgres:
            try:
                with self._raw() as c:
                    if claim is not None and c.run(*_claim_statement(claim, order.id)) != 1:
                        raise _ClaimLost
                    for sql, values in statements:
                        c.run(sql, values)
            except _ClaimLost:
                return False
            return True
        # Before one Sync in autocommit the statements are one implicit transaction,
        # committed at the Sync, rolled back whole if one fails (interrupted, the
        # connection is closed: the server commits all of it if it had the Sync, else
        # none), each statement seeing those before it: one round trip where BEGIN,
        # each statement and COMMIT took one. The claim goes first, and the writes
        # after it are made only while it is held (`_CLAIM_HELD`): a claim lost takes
        # no row and they write none, with no statement failing; a claim another
        # transaction holds waits for its end and is then judged again.
        if claim is not None:
            held = (claim[0], order.id)
            statements = [
                _claim_statement(claim, order.id),
                *((_WHILE_CLAIM_HELD[sql], (*values, *held)) for sql, values in statements),
            ]
        with self._once() as c:
            changed: list[int] = c.pipelined(statements)  # type: ignore[attr-defined]
        return claim is None or changed[0] == 1

    def order(self, order_id: str) -> OrderRecord | None:
        row = self._one(self._reads.order, (order_id,))
        return None if row is None else _order_from(row[0], row[1])

    def order_with_authorizations(
        self, order_id: str
    ) -> tuple[OrderRecord, list[AuthorizationRecord]] | None:
        """The order and its authorizations (in its order, missing ones skipped) in one
        statement, where `order` and `authorizations` took two: a poll and finalize."""
        return _order_with_authorizations(self._all(self._reads.order_with_authzs, (order_id,)))

    def polled_order(self, order_id: str) -> tuple[OrderRecord, list[AuthorizationRecord]] | None:
        """`order_with_authorizations` for a poll: an order with a certificate, an error
        or a finalize claim comes without its authorizations (none read or decoded),
        since its status and error do not depend on them; others with theirs."""
        return _order_with_authorizations(self._all(self._reads.order_poll, (order_id,)))

    def order_with_authorizations_ahead(
        self, order_id: str
    ) -> Ahead[tuple[OrderRecord, list[AuthorizationRecord]] | None]:
        """`order_with_authorizations`, to send ahead (`Ahead`)."""
        return Ahead(
            self._reads.order_with_authzs, (order_id,), _order_with_authorizations, self._all
        )

    def polled_order_ahead(
        self, order_id: str
    ) -> Ahead[tuple[OrderRecord, list[AuthorizationRecord]] | None]:
        """`polled_order`, to send ahead (`Ahead`)."""
        return Ahead(self._reads.order_poll, (order_id,), _order_with_authorizations, self._all)

    def account_orders(
        self, account_id: str, now: datetime, after: tuple[int, str] | None, limit: int
    ) -> list[tuple[int, str]]:
        """(created, id) of up to `limit` of the account's orders that are not known to
        be invalid, newest first, after the order `after` in that order (keyset
        pagination on the (account_id, created) index: each page costs its own rows)."""
        live = "error IS NULL AND (expires > ? OR certificate_id IS NOT NULL)"
        sql = f"SELECT created, id FROM orders WHERE account_id = ? AND {live}"
        params: list[Any] = [account_id, to_us(now)]
        if after is not None:
            sql += " AND (created < ? OR (created = ? AND id < ?))"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY created DESC, id DESC LIMIT ?"
        with self._raw() as c:
            rows = c.all(sql, (*params, limit))
        return [(int(r[0]), str(r[1])) for r in rows]

    def authz_in_renewal(self, authz_id: str) -> bool:
        """Whether an order that carries `replaces` uses this authorization (RFC 9773 §5
        renewals are exempt from rate limits, failed validations included)."""
        return self._one(_RENEWAL_AUTHZ_EXISTS, (authz_id,)) is not None

    def claim_finalize(
        self,
        order_id: str,
        csr: bytes,
        now: datetime,
        reservation: CertificateRecord | None = None,
        within: Cursor | None = None,
    ) -> bool:
        """ready -> processing, once: of two concurrent finalizes exactly one wins. The
        winner's `reservation` (its certificate's serial, pem NULL) is recorded in the
        same transaction: one commit, and no claimed order without its serial.
        `within`: the caller's transaction (with the issuance limits), else its own (on
        PostgreSQL, with a reservation, the one statement in autocommit)."""
        if within is None:
            use = self._once if self._postgres and reservation is not None else self._raw
            with use() as c:
                return self.claim_finalize(order_id, csr, now, reservation, c)
        together = self.claim_statement(order_id, csr, now, reservation)
        if together is not None:
            return claimed(within.all(*together))
        changed = within.run(
            "UPDATE orders SET csr = ?, finalize_started = ? "
            "WHERE id = ? AND finalize_started IS NULL AND error IS NULL",
            (csr, to_us(now), order_id),
        )
        if changed == 1 and reservation is not None:
            insert_reservation(within, reservation)
        return changed == 1

    def claim_statement(
        self, order_id: str, csr: bytes, now: datetime, reservation: CertificateRecord | None
    ) -> tuple[str, tuple[Any, ...]] | None:
        """`claim_finalize`'s one statement on PostgreSQL (the claim and the serial's
        reservation; `claimed` reads its rows), for a caller to send with others; None
        where the claim takes two (SQLite, or no reservation: the insert follows the
        update's answer)."""
        if not self._postgres or reservation is None:
            return None
        values = reservation_values(reservation)
        return CLAIM_AND_RESERVE, (csr, to_us(now), order_id, *values)

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
        return [_order_of(r, r[10]) for r in rows]

    def fail_order(self, order_id: str, error: dict[str, Any]) -> bool:
        """The order invalid with `error`; True only if this call made it so (it had
        neither a certificate nor an error): only that failure may refund its limits."""
        with self._tx() as c:
            res = c.execute(
                orders.update()
                .where(
                    orders.c.id == order_id,
                    orders.c.certificate_id.is_(None),
                    orders.c.error.is_(None),
                )
                .values(error=json.dumps(error))
            )
            return bool(res.rowcount == 1)

    def authz_profiles(self, ids: Sequence[str]) -> dict[str, str]:
        """The profile each authorization was made for (absent: the default profile)."""
        if not ids:
            return {}
        with self._once() as c:
            rows = c.all(
                f"SELECT id, profile FROM authorizations "
                f"WHERE profile IS NOT NULL AND id IN ({marks(len(ids))})",
                tuple(ids),
            )
        return {r[0]: r[1] for r in rows}

    def evidence(self, authz_id: str) -> ValidationEvidence | None:
        """What `finish_challenge` recorded about how the validation was made (MPIC,
        DNSSEC), or None for no such authorization."""
        with self._raw() as c:
            row = c.one(
                "SELECT mpic_quorum, mpic_perspectives, dnssec_dcv, dnssec_caa "
                "FROM authorizations WHERE id = ?",
                (authz_id,),
            )
        if row is None:
            return None
        perspectives = None if row[1] is None else tuple(loads(row[1]))
        return ValidationEvidence(row[0], perspectives, _flag(row[2]), _flag(row[3]))


def _flag(value: object) -> bool | None:
    """A nullable boolean column as read (SQLite gives 0/1)."""
    return None if value is None else bool(value)


def _authorization_inserts(
    authz: AuthorizationRecord, profile: str | None
) -> list[tuple[str, Sequence[Any]]]:
    """The authorization's row, and its challenges' in one multi-row INSERT. One stored
    with a challenge valid or invalid already is stored decided (`decided_by`)."""
    decided = None  # the least id, as migration 0010 fills it in
    for ch in authz.challenges:
        if ch.status in _DECIDING and (decided is None or ch.id < decided):
            decided = ch.id
    head = (
        authz.id,
        authz.account_id,
        str(authz.identifier.type),
        authz.identifier.value,
        authz.wildcard,
        str(authz.stored_status),
        to_us(authz.expires),
        profile,
        decided,
    )
    statements: list[tuple[str, Sequence[Any]]] = [(_INSERT_AUTHZ, head)]
    if authz.challenges:
        statements.append(
            (
                _INSERT_CHALLENGES[len(authz.challenges)],
                [
                    value
                    for ch in authz.challenges
                    for value in (ch.id, authz.id, str(ch.type), ch.token, str(ch.status))
                ],
            )
        )
    return statements


def _order_values(order: OrderRecord) -> tuple[Any, ...]:
    return (
        order.id,
        order.account_id,
        ids_json(order.identifiers),
        json.dumps(list(order.authz_ids)),
        to_us(order.expires),
        to_us(order.created),
        None if order.not_before is None else to_us(order.not_before),
        None if order.not_after is None else to_us(order.not_after),
        order.profile,
        order.replaces,
    )

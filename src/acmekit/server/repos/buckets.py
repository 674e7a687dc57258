"""Rate-limit buckets: one GCRA theoretical arrival time (TAT) per key, in microseconds
(server/ratelimits.py holds the math and decides; this stores it).

Each change is one statement, the same on SQLite (3.35 or later) and PostgreSQL: an
upsert that creates the bucket or moves its TAT, and whose `WHERE` on the conflicting row
is the GCRA admission test, so the row it returns says granted and no row says refused.
Two processes taking from one bucket at once are serialized by the row's lock (or
SQLite's write lock): neither can act on a TAT the other has already moved, and there is
nothing to retry. `max(TAT, now)` is written as a CASE: SQLite's `max()` is PostgreSQL's
`GREATEST()`.

The time a statement judges by is `now`, given by the caller, or, when the caller gives
None, the database's own clock read inside the statement: processes whose clocks differ
by D would otherwise each see the bucket D fuller or emptier, and together admit about
D / T more than the limit (T the emission interval). `now` is evaluated once, in a
one-row derived table; the upsert's new row carries it (`excluded.tat` is now + step), so
the conflicting row's test reads the same instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from acmekit.server.repos.base import Ahead, Cursor, Repository, marks

# The database's clock in integer microseconds since the epoch, evaluated once per
# statement. SQLite's 'now' is stable within one statement step (milliseconds).
DB_NOW = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
    "sqlite": "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
}

# now, as the new row carries it
_NOW = "(excluded.tat - ?)"
_START = f"CASE WHEN rate_buckets.tat > {_NOW} THEN rate_buckets.tat ELSE {_NOW} END"

# A new bucket starts full: its TAT after this take is now + step (step <= tolerance, which
# the limiter makes sure of). An existing one moves to max(TAT, now) + step, only if that
# stays within the tolerance of now. (`WHERE true`: SQLite's parser needs it to tell an
# INSERT ... SELECT's ON CONFLICT from a join's ON.)
_TAKE = (
    "INSERT INTO rate_buckets (key, tat) SELECT ?, n.now + ? FROM (SELECT {now} AS now) n "
    f"WHERE true ON CONFLICT (key) DO UPDATE SET tat = {_START} + ? "
    f"WHERE {_START} + ? <= {_NOW} + ? RETURNING tat"
)

# Work already done counts whatever the bucket holds, but the TAT never runs more than
# the tolerance ahead of now (a token bucket never below zero).
_SPEND = (
    "INSERT INTO rate_buckets (key, tat) SELECT ?, n.now + ? FROM (SELECT {now} AS now) n "
    f"WHERE true ON CONFLICT (key) DO UPDATE SET tat = CASE WHEN {_START} + ? > {_NOW} + ? "
    f"THEN {_NOW} + ? ELSE {_START} + ? END"
)

# A take given back (the work it paid for did not happen): the TAT moves back by the
# cost, never below now (a bucket holds no more than it would if left alone).
_REFUND = (
    "UPDATE rate_buckets SET tat = CASE WHEN rate_buckets.tat - ? > n.now "
    "THEN rate_buckets.tat - ? ELSE n.now END FROM (SELECT {now} AS now) n WHERE key = ?"
)

_READ = "SELECT (SELECT tat FROM rate_buckets WHERE key = ?), {now}"

# The bucket whose key is a prefix and then an authorization's "ACCOUNT:HOST", the
# authorization found by the id of one of its challenges: the time read at, the key as
# the database made it, and its TAT (NULL: no bucket; no key: no such challenge).
_READ_OF_CHALLENGE = (
    "SELECT n.now, k.key, (SELECT b.tat FROM rate_buckets b WHERE b.key = k.key) "
    "FROM (SELECT {now} AS now) n LEFT JOIN (SELECT ? || a.account_id || ':' || "
    "lower(a.identifier_value) AS key FROM challenges c JOIN authorizations a "
    "ON a.id = c.authz_id WHERE c.id = ?) k ON true"
)


def _tats_of(rows: Sequence[Any], _params: Sequence[Any]) -> tuple[dict[str, int], int]:
    """`reads`' rows: the TATs found by key, and the time they were read at."""
    found = {str(r[1]): int(r[2]) for r in rows if r[1] is not None}
    return found, int(rows[0][0])


def _keyed_tat_of(
    rows: Sequence[Any], _params: Sequence[Any]
) -> tuple[str | None, int | None, int]:
    """`_READ_OF_CHALLENGE`'s row: the key, its TAT, the time read at."""
    now, key, tat = rows[0]
    return (None if key is None else str(key)), (None if tat is None else int(tat)), int(now)


class BucketRepository(Repository):
    """One row (key, tat) per bucket."""

    def _text(self, template: str, now: int | None) -> tuple[str, tuple[int, ...]]:
        """The statement with `now` as a parameter, or as the database's clock."""
        if now is None:
            return template.format(now=DB_NOW[self._dialect]), ()
        return template.format(now="?"), (now,)

    def tat(self, key: str) -> int | None:
        row = self._one("SELECT tat FROM rate_buckets WHERE key = ?", (key,))
        return None if row is None else int(row[0])

    def read(
        self, key: str, now: int | None, within: Cursor | None = None
    ) -> tuple[int | None, int]:
        """The bucket's TAT and the time it is read at (`now`, or the database's);
        `within`: the caller's transaction, else a statement of its own."""
        sql, at = self._text(_READ, now)
        row = within.one(sql, (key, *at)) if within is not None else self._one(sql, (key, *at))
        assert row is not None
        return (None if row[0] is None else int(row[0])), int(row[1])

    def reads(self, keys: Sequence[str], now: int | None) -> tuple[dict[str, int], int]:
        """The TATs of those of `keys` that have a bucket, and the time they are read
        at, in one statement (the left join gives the time a row when no bucket is)."""
        sql, params = self._reads(keys, now)
        return _tats_of(self._all(sql, params), params)

    def reads_ahead(
        self, keys: Sequence[str], now: int | None
    ) -> Ahead[tuple[dict[str, int], int]]:
        """`reads`, to send ahead (`Ahead`)."""
        sql, params = self._reads(keys, now)
        return Ahead(sql, params, _tats_of, self._all)

    def read_of_challenge_ahead(
        self, prefix: str, challenge_id: str, now: int | None
    ) -> Ahead[tuple[str | None, int | None, int]]:
        """The bucket of `prefix` and the account and host of the authorization of
        challenge `challenge_id` (`_READ_OF_CHALLENGE`), to send ahead with the
        challenge's own read (`Ahead`): its key as read, its TAT and the time read at.
        The key is made in SQL, so a caller takes the answer only for the key it makes."""
        sql, at = self._text(_READ_OF_CHALLENGE, now)
        return Ahead(sql, (*at, prefix, challenge_id), _keyed_tat_of, self._all)

    def _reads(self, keys: Sequence[str], now: int | None) -> tuple[str, tuple[Any, ...]]:
        sql, at = self._text(
            "SELECT n.now, b.key, b.tat FROM (SELECT {now} AS now) n LEFT JOIN "
            f"rate_buckets b ON b.key IN ({marks(len(keys))})",
            now,
        )
        return sql, (*at, *keys)

    def take(
        self,
        key: str,
        now: int | None,
        step: int,
        tolerance: int,
        within: Cursor | None = None,
    ) -> bool:
        """Move the TAT by `step` if it then stays within `tolerance` of `now`: granted.
        `within`: the caller's transaction, else a statement of its own."""
        sql, params = self._take(key, now, step, tolerance)
        if within is not None:
            return bool(within.all(sql, params))
        return bool(self._all(sql, params))

    def take_with_ahead(
        self, key: str, now: int | None, step: int, tolerance: int, ahead: Sequence[Ahead[Any]]
    ) -> bool:
        """`take` in a statement of its own, with the caller's reads `ahead` in its round
        trip on PostgreSQL (`Repository._with_ahead`), sent before it: the bucket's row
        lock is held no longer than by the take alone, however long they take. Granted
        or not, each read's answer is left for its `result()`."""
        sql, params = self._take(key, now, step, tolerance)
        return self._with_ahead(sql, params, ahead, last=True) is not None

    def takes_then(
        self,
        takes: Sequence[tuple[str, int | None, int, int]],
        then: tuple[str, Sequence[Any]],
        within: Cursor,
    ) -> tuple[list[bool], list[Any]]:
        """`take` for each (key, now, step, tolerance), then the caller's statement
        `then`, in the caller's transaction `within`, all in one round trip on
        PostgreSQL (`Cursor.batch`): whether each was granted, and `then`'s rows."""
        statements: list[tuple[str, Sequence[Any]]] = []
        for key, now, step, tolerance in takes:
            statements.append(self._take(key, now, step, tolerance))
        statements.append(then)
        found = within.batch(statements)
        granted = []
        for rows in found[:-1]:
            granted.append(bool(rows))
        return granted, found[-1]

    def _take(
        self, key: str, now: int | None, step: int, tolerance: int
    ) -> tuple[str, tuple[Any, ...]]:
        sql, at = self._text(_TAKE, now)
        return sql, (key, *at, step, step, step, step, step, step, step, step, tolerance)

    def spend(self, key: str, now: int | None, step: int, tolerance: int) -> None:
        """Move the TAT by `step`, at most to `now + tolerance`."""
        sql, at = self._text(_SPEND, now)
        s = step
        params = (key, *at, s, s, s, s, s, tolerance, s, tolerance, s, s, s)
        self._run(sql, params)

    def refund(self, key: str, now: int | None, step: int) -> None:
        """Move the TAT back by `step`, never below `now`."""
        sql, at = self._text(_REFUND, now)
        self._run(sql, (step, step, *at, key))

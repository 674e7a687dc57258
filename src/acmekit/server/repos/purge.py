"""The purge's statements: expired orders, authorizations with their challenges, and
rate-limit buckets at or behind now, deleted a bounded batch at a time, each batch a
transaction of its own (on PostgreSQL its row locks last one batch; on SQLite the write
lock does). server/purge.py says what is due and why it is safe to delete.

A batch reads at most `batch` rows of an index, however many expired rows are kept
(docs/decisions.md, "The purge's cost bounded by its batch"):

- Two walks each over orders and authorizations. The short one (`grace`) goes on
  from a keyset cursor (expires, id), the last row it examined, deleted or kept: a row
  it keeps is never due under the grace later (an order claimed for finalize stays
  claimed; a validated authorization stays validated), and a row made later expires
  after the cutoff, ahead of the cursor. The long one (`validated`) goes from the
  oldest entry, where every row is due: those the grace kept, now past the retention.
  A cursor lost (a restart) costs one pass over the kept rows, a batch at a time.
  But for orders, the long walk keeps a cursor too: an order still being issued is kept
  past the retention, and a batch's worth of them at the front stopped a walk that
  started at the oldest each time (the failed orders behind them never deleted). At
  its end it starts over from the oldest, so one that fails after the cursor passed it
  is deleted at the next pass.
- Orders walk `ix_orders_unissued` (migration 0013), which holds only orders without a
  certificate: an issued order, kept for ever, drops out of it when it is issued.
  Authorizations walk `ix_authz_expires`, both on (expires, id).
- A batch reads its range first, (expires, id) from the index alone, then deletes
  within `(expires, id)` bounds; `+expires` keeps the planners to those bounds (SQLite
  bounded the scan by the cutoff, every kept row after the cursor; a subquery's batch of
  ids, PostgreSQL joined against every row due).
- Each DELETE states the predicate again on the rows it deletes: on PostgreSQL a row
  changed by another transaction meanwhile is judged again as it now is (READ
  COMMITTED), so an authorization whose expiry a finishing validation has just moved,
  or an order just issued, stays.
- An authorization's challenges go with it, in its transaction: the ids the DELETE
  returned (RETURNING: SQLite 3.35 or later, as repos/buckets.py needs already).
- Buckets are walked in the order of their keys, from where the last batch stopped: an
  index on the TAT, which every rate-limited request moves, would cost each of them a
  write more (docs/decisions.md, "Purging what the CA no longer needs"). Their cutoff is
  a number, or None: the database's clock less CLOCK_SKEW, the clock the rate limiter
  judges them by when it reads the database's (repos/buckets.py).
- A dry run counts along the same walks, a batch's range at a time (each its own short
  transaction), and stops after a limit of rows examined: a COUNT(*) over every due
  row read them all in one statement, millions on a CA that had not purged for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from acmekit.protocol.messages import ChallengeStatus
from acmekit.server.repos.base import Repository, marks
from acmekit.server.repos.buckets import DB_NOW

# Where a walk starts: before every (expires, id).
START = (-(2**62), "")


@dataclass(frozen=True)
class Cutoffs:
    """What is due, in microseconds since the epoch: orders without a certificate that
    expired before `orders` (never claimed for finalize) or before `validated` (claimed
    and failed: a certificate request, perhaps a precertificate's); authorizations that
    expired before `authorizations`, or, those with a valid challenge, before
    `validated`; buckets whose TAT is before `buckets` (None: the database's clock less
    `skew`)."""

    orders: int
    authorizations: int
    validated: int
    buckets: int | None
    skew: int = 0


@dataclass(frozen=True)
class Walked:
    """One batch of a walk: rows deleted, rows examined, and the last examined (where
    the walk goes on; None when it examined none)."""

    deleted: int
    examined: int
    last: tuple[int, str] | None
    challenges: int = 0


# The next batch of a walk's index past the cursor, (expires, id) only (read from the
# index): the range the batch examines. The partial index's predicate is stated for
# the planner.
_UNISSUED = "certificate_id IS NULL"
_AFTER = "(expires, id) > (?, ?)"
_ORDERS_RANGE = (
    f"SELECT expires, id FROM orders WHERE {_UNISSUED} AND expires < ? AND {_AFTER} "
    "ORDER BY expires, id LIMIT ?"
)
_AUTHZS_RANGE = (
    f"SELECT expires, id FROM authorizations WHERE expires < ? AND {_AFTER} "
    "ORDER BY expires, id LIMIT ?"
)
_UPTO = "(expires, id) <= (?, ?)"

# Under the grace: never claimed for finalize, so never issued (RFC 8555 §7.1.6: invalid
# from its expiry on). A claimed order is kept: being issued, recovery takes it up and
# its certificate needs it; failed, it is a certificate request (BR §5.4.1), perhaps of
# a precertificate that counts as issued (RFC 6962 §3.1), kept as long as a validation.
# (Unary plus: SQLite took the index on finalize_started for `IS NULL`, every pending
# order, over the batch's range of the walk's index.)
_ORDER_GRACE_DUE = f"{_UNISSUED} AND +finalize_started IS NULL"
_DELETE_ORDERS_GRACE = (
    f"DELETE FROM orders WHERE {_ORDER_GRACE_DUE} AND +expires < ? AND {_AFTER} AND {_UPTO}"
)
# Past the retention: every order without a certificate but one being issued.
_DELETE_ORDERS_OLD = (
    f"DELETE FROM orders WHERE {_UNISSUED} AND (+finalize_started IS NULL OR error IS NOT "
    f"NULL) AND +expires < ? AND {_AFTER} AND {_UPTO}"
)
# A dry run's count within a batch's range of the grace's walk (expires before the
# grace's cutoff): never claimed, or failed and past the retention (`_DELETE_ORDERS_OLD`).
_COUNT_ORDERS = (
    f"SELECT COUNT(*) FROM orders WHERE {_UNISSUED} AND +expires < ? AND {_AFTER} AND "
    f"{_UPTO} AND (+finalize_started IS NULL OR (error IS NOT NULL AND +expires < ?))"
)

# Under the grace: an authorization never validated. One no challenge decided
# (`decided_by`, set with the outcome) was not; the challenges of one decided are
# counted, a correlated scalar subquery on their index: PostgreSQL made NOT EXISTS under
# the OR a hashed subplan, a scan of every challenge.
_NOT_VALIDATED = (
    "(decided_by IS NULL OR (SELECT COUNT(*) FROM challenges c WHERE c.authz_id = "
    f"authorizations.id AND c.status = '{ChallengeStatus.VALID}') = 0)"
)
_DELETE_AUTHZS_GRACE = (
    f"DELETE FROM authorizations WHERE +expires < ? AND {_AFTER} AND {_UPTO} "
    f"AND {_NOT_VALIDATED} RETURNING id"
)
# Past the retention, every authorization is due.
_DELETE_AUTHZS_OLD = (
    f"DELETE FROM authorizations WHERE +expires < ? AND {_AFTER} AND {_UPTO} RETURNING id"
)
# A dry run's count within a batch's range: never validated, or past the retention;
# with their challenges.
_COUNT_AUTHZS = (
    "SELECT COUNT(*), COALESCE(SUM(n), 0) FROM (SELECT (SELECT COUNT(*) FROM challenges c "
    "WHERE c.authz_id = authorizations.id) AS n FROM authorizations WHERE +expires < ? "
    f"AND {_AFTER} AND {_UPTO} AND (+expires < ? OR {_NOT_VALIDATED})) d"
)

# The last key of the next batch of buckets, from the last key seen.
_BUCKETS_END = (
    "SELECT MAX(key) FROM (SELECT key FROM rate_buckets WHERE key > ? ORDER BY key LIMIT ?) b"
)
_DELETE_BUCKETS = "DELETE FROM rate_buckets WHERE key > ? AND key <= ? AND tat < {cut}"
# A dry run's batch: its last key and how many keys it spans, then those due in it.
_BUCKETS_SPAN = (
    "SELECT MAX(key), COUNT(*) FROM (SELECT key FROM rate_buckets WHERE key > ? "
    "ORDER BY key LIMIT ?) b"
)
_COUNT_BUCKETS = "SELECT COUNT(*) FROM rate_buckets WHERE key > ? AND key <= ? AND tat < {cut}"


@dataclass(frozen=True)
class Due:
    """Rows due for the purge (a dry run), or deleted by it."""

    orders: int = 0
    authorizations: int = 0
    challenges: int = 0
    buckets: int = 0

    def __add__(self, other: Due) -> Due:
        return Due(
            self.orders + other.orders,
            self.authorizations + other.authorizations,
            self.challenges + other.challenges,
            self.buckets + other.buckets,
        )


class Walk(StrEnum):
    """The purge's walks, by what they delete (a dry run's counts, in its output)."""

    ORDERS = "orders"
    AUTHORIZATIONS = "authorizations"
    BUCKETS = "rate-limit buckets"


@dataclass(frozen=True)
class DueCount:
    """A dry run's counts: `counted`, the rows due as far as each walk went, and the
    walks that stopped at the dry run's limit before their end (`at_least`): what they
    counted is a lower bound (an authorization's challenges go with its walk)."""

    counted: Due
    at_least: frozenset[Walk] = frozenset()


class PurgeRepository(Repository):
    """One batch of a walk a call, each committed on its own."""

    def orders_grace(self, cut: Cutoffs, after: tuple[int, str], batch: int) -> Walked:
        """The next `batch` orders without a certificate, past `after` and expired
        before the grace's cutoff: those never claimed deleted."""
        return self._orders(cut.orders, _DELETE_ORDERS_GRACE, after, batch)

    def orders_old(self, cut: Cutoffs, after: tuple[int, str], batch: int) -> Walked:
        """The next `batch` orders without a certificate past `after` expired before the
        retention's cutoff: all deleted but those being issued."""
        return self._orders(cut.validated, _DELETE_ORDERS_OLD, after, batch)

    def authorizations_grace(self, cut: Cutoffs, after: tuple[int, str], batch: int) -> Walked:
        """The next `batch` authorizations past `after` expired before the grace's
        cutoff: those never validated deleted, with their challenges."""
        return self._authorizations(cut.authorizations, _DELETE_AUTHZS_GRACE, after, batch)

    def authorizations_old(self, cut: Cutoffs, batch: int) -> Walked:
        """The oldest `batch` authorizations expired before the retention's cutoff: all
        deleted, with their challenges."""
        return self._authorizations(cut.validated, _DELETE_AUTHZS_OLD, START, batch)

    def _orders(self, cutoff: int, delete: str, after: tuple[int, str], batch: int) -> Walked:
        """A batch's range of the orders' walk read first (from the index alone), then
        deleted in that range, `(expires, id)` bounding both ends: a DELETE whose batch
        is a subquery's ids read every due row (PostgreSQL planned a hash join over them
        all)."""
        with self._raw() as c:
            rows = c.all(_ORDERS_RANGE, (cutoff, *after, batch))
            if not rows:
                return Walked(0, 0, None)
            last = (int(rows[-1][0]), str(rows[-1][1]))
            gone = c.run(delete, (cutoff, *after, *last))
        return Walked(gone, len(rows), last)

    def _authorizations(
        self, cutoff: int, delete: str, after: tuple[int, str], batch: int
    ) -> Walked:
        """As `_orders`, with the deleted authorizations' challenges."""
        with self._raw() as c:
            self._no_jit(c)
            rows = c.all(_AUTHZS_RANGE, (cutoff, *after, batch))
            if not rows:
                return Walked(0, 0, None)
            last = (int(rows[-1][0]), str(rows[-1][1]))
            ids = [r[0] for r in c.all(delete, (cutoff, *after, *last))]
            challenges = self._challenges(c, ids)
        return Walked(len(ids), len(rows), last, challenges)

    def buckets(self, cut: Cutoffs, after: str, batch: int) -> tuple[int, str | None]:
        """Among the next `batch` buckets by key after `after`, delete those due: how
        many were, and the last key looked at (None: the end of the table, where the
        next walk starts again from "")."""
        sql, at = self._bucket_cut(_DELETE_BUCKETS, cut)
        with self._raw() as c:
            end = c.one(_BUCKETS_END, (after, batch))[0]
            if end is None:
                return 0, None
            return c.run(sql, (after, end, *at)), str(end)

    def count_orders(self, cut: Cutoffs, after: tuple[int, str], batch: int) -> Walked:
        """A dry run's batch of orders: the next `batch` without a certificate past
        `after` and expired before the grace's cutoff, and how many of them are due
        (`deleted`), under the grace or past the retention. Nothing is deleted."""
        with self._raw() as c:
            rows = c.all(_ORDERS_RANGE, (cut.orders, *after, batch))
            if not rows:
                return Walked(0, 0, None)
            last = (int(rows[-1][0]), str(rows[-1][1]))
            due = c.one(_COUNT_ORDERS, (cut.orders, *after, *last, cut.validated))[0]
        return Walked(int(due), len(rows), last)

    def count_authorizations(self, cut: Cutoffs, after: tuple[int, str], batch: int) -> Walked:
        """As `count_orders`, for authorizations, with the due ones' challenges."""
        with self._raw() as c:
            self._no_jit(c)
            rows = c.all(_AUTHZS_RANGE, (cut.authorizations, *after, batch))
            if not rows:
                return Walked(0, 0, None)
            last = (int(rows[-1][0]), str(rows[-1][1]))
            params = (cut.authorizations, *after, *last, cut.validated)
            due, challenges = c.one(_COUNT_AUTHZS, params)
        return Walked(int(due), len(rows), last, int(challenges))

    def count_buckets(self, cut: Cutoffs, after: str, batch: int) -> tuple[int, int, str | None]:
        """A dry run's batch of buckets: among the next `batch` by key after `after`,
        how many are due, how many were looked at, and the last key (None: none left)."""
        sql, at = self._bucket_cut(_COUNT_BUCKETS, cut)
        with self._raw() as c:
            end, spanned = c.one(_BUCKETS_SPAN, (after, batch))
            if end is None:
                return 0, 0, None
            return int(c.one(sql, (after, end, *at))[0]), int(spanned), str(end)

    def _bucket_cut(self, template: str, cut: Cutoffs) -> tuple[str, tuple[int, ...]]:
        if cut.buckets is None:
            return template.format(cut=f"({DB_NOW[self._dialect]} - ?)"), (cut.skew,)
        return template.format(cut="?"), (cut.buckets,)

    def _no_jit(self, c: Any) -> None:
        if self._postgres:
            # The plan's estimate (a LIMIT over a filtered index scan) passes
            # jit_above_cost: compiling it took 0.1 s a batch, four times the batch.
            c.run("SET LOCAL jit = off")

    @staticmethod
    def _challenges(c: Any, ids: list[Any]) -> int:
        if not ids:
            return 0
        return int(c.run(f"DELETE FROM challenges WHERE authz_id IN ({marks(len(ids))})", ids))

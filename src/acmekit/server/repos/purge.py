"""The purge's statements: expired orders, authorizations with their challenges, and
rate-limit buckets at or behind now, deleted a bounded batch at a time, each batch a
transaction of its own (on PostgreSQL its row locks last one batch; on SQLite the write
lock does). server/purge.py says what is due and why it is safe to delete.

- Orders and authorizations go oldest expiry first, on the indexes on `expires`
  (migration 0013). Each DELETE names its batch by a subquery and states the predicate
  again on the rows it deletes: on PostgreSQL a row changed by another transaction
  meanwhile is judged again as it now is (READ COMMITTED), so an authorization whose
  expiry a finishing validation has just moved stays.
- An authorization's challenges go with it, in its transaction: the ids the DELETE
  returned (RETURNING: SQLite 3.35 or later, as repos/buckets.py needs already).
- Buckets are walked in the order of their keys, from where the last batch stopped: an
  index on the TAT, which every rate-limited request moves, would cost each of them a
  write more (docs/decisions.md, "Purging what the CA no longer needs").
"""

from __future__ import annotations

from dataclasses import dataclass

from acmekit.protocol.messages import ChallengeStatus
from acmekit.server.repos.base import Repository, marks


@dataclass(frozen=True)
class Cutoffs:
    """What is due, in microseconds since the epoch: orders without a certificate that
    expired before `orders`; authorizations that expired before `authorizations`, or,
    those with a valid challenge, before `validated`; buckets whose TAT is before
    `buckets`."""

    orders: int
    authorizations: int
    validated: int
    buckets: int


# Never issued: no certificate, and no finalize claim still open (a claim without an
# error is an issuance that recovery takes up; its certificate would need the order).
_ORDER_DUE = (
    "expires < ? AND certificate_id IS NULL AND (finalize_started IS NULL OR error IS NOT NULL)"
)
_DELETE_ORDERS = (
    f"DELETE FROM orders WHERE id IN (SELECT id FROM orders WHERE {_ORDER_DUE} "
    f"ORDER BY expires LIMIT ?) AND {_ORDER_DUE}"
)
_COUNT_ORDERS = f"SELECT COUNT(*) FROM orders WHERE {_ORDER_DUE}"

# A validated authorization may have backed a certificate: it waits for the longer cutoff.
# One no challenge decided (`decided_by`, set with the outcome) was never validated; the
# challenges of one decided are counted, a correlated scalar subquery on their index:
# PostgreSQL made NOT EXISTS under the OR a hashed subplan, a scan of every challenge.
_AUTHZ_DUE = (
    "a.expires < ? AND (a.expires < ? OR a.decided_by IS NULL OR (SELECT COUNT(*) FROM "
    f"challenges c WHERE c.authz_id = a.id AND c.status = '{ChallengeStatus.VALID}') = 0)"
)
_DELETE_AUTHZS = (
    "DELETE FROM authorizations WHERE id IN (SELECT a.id FROM authorizations a "
    f"WHERE {_AUTHZ_DUE} ORDER BY a.expires LIMIT ?) AND expires < ? RETURNING id"
)
_COUNT_AUTHZS = (
    f"SELECT COUNT(*), (SELECT COUNT(*) FROM challenges WHERE authz_id IN "
    f"(SELECT a.id FROM authorizations a WHERE {_AUTHZ_DUE})) "
    f"FROM authorizations a WHERE {_AUTHZ_DUE}"
)

# The last key of the next batch of buckets, from the last key seen.
_BUCKETS_END = (
    "SELECT MAX(key) FROM (SELECT key FROM rate_buckets WHERE key > ? ORDER BY key LIMIT ?) b"
)
_DELETE_BUCKETS = "DELETE FROM rate_buckets WHERE key > ? AND key <= ? AND tat < ?"
_COUNT_BUCKETS = "SELECT COUNT(*) FROM rate_buckets WHERE tat < ?"


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


class PurgeRepository(Repository):
    """One batch of each kind a call, each committed on its own."""

    def orders(self, cut: Cutoffs, batch: int) -> int:
        """Delete up to `batch` orders that are due; how many were."""
        with self._raw() as c:
            return c.run(_DELETE_ORDERS, (cut.orders, batch, cut.orders))

    def authorizations(self, cut: Cutoffs, batch: int) -> tuple[int, int]:
        """Delete up to `batch` authorizations that are due, with their challenges; how
        many of each were."""
        with self._raw() as c:
            if self._postgres:
                # The plan's estimate (a LIMIT over a filtered index scan) passes
                # jit_above_cost: compiling it took 0.1 s a batch, four times the batch.
                c.run("SET LOCAL jit = off")
            rows = c.all(
                _DELETE_AUTHZS, (cut.authorizations, cut.validated, batch, cut.authorizations)
            )
            ids = [r[0] for r in rows]
            if not ids:
                return 0, 0
            gone = c.run(f"DELETE FROM challenges WHERE authz_id IN ({marks(len(ids))})", ids)
        return len(ids), gone

    def buckets(self, cut: Cutoffs, after: str, batch: int) -> tuple[int, str | None]:
        """Among the next `batch` buckets by key after `after`, delete those due: how
        many were, and the last key looked at (None: the end of the table, where the
        next walk starts again from "")."""
        with self._raw() as c:
            end = c.one(_BUCKETS_END, (after, batch))[0]
            if end is None:
                return 0, None
            return c.run(_DELETE_BUCKETS, (after, end, cut.buckets)), str(end)

    def due(self, cut: Cutoffs) -> Due:
        """How many rows the purge would delete now (the counts of a dry run)."""
        authz = (cut.authorizations, cut.validated)
        with self._raw() as c:
            orders = c.one(_COUNT_ORDERS, (cut.orders,))[0]
            authzs, challenges = c.one(_COUNT_AUTHZS, (*authz, *authz))
            buckets = c.one(_COUNT_BUCKETS, (cut.buckets,))[0]
        return Due(int(orders), int(authzs), int(challenges), int(buckets))

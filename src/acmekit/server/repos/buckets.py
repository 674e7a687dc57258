"""Rate-limit buckets: one GCRA theoretical arrival time (TAT) per key, in microseconds
(server/ratelimits.py holds the math and decides; this stores it).

Each change is one statement, the same on SQLite (3.35 or later) and PostgreSQL: an
upsert that creates the bucket or moves its TAT, and whose `WHERE` on the conflicting row
is the GCRA admission test, so the row it returns says granted and no row says refused.
Two processes taking from one bucket at once are serialized by the row's lock (or
SQLite's write lock): neither can act on a TAT the other has already moved, and there is
nothing to retry. `max(TAT, now)` is written as a CASE: SQLite's `max()` is PostgreSQL's
`GREATEST()`.
"""

from __future__ import annotations

from collections.abc import Sequence

from acmekit.server.repos.base import Cursor, Repository, marks

_START = "CASE WHEN rate_buckets.tat > ? THEN rate_buckets.tat ELSE ? END"

# A new bucket starts full: its TAT after this take is now + step (step <= tolerance, which
# the limiter makes sure of). An existing one moves to max(TAT, now) + step, only if that
# stays within the tolerance of now.
_TAKE = (
    "INSERT INTO rate_buckets (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
    f"SET tat = {_START} + ? WHERE {_START} + ? <= ? RETURNING tat"
)

# Work already done counts whatever the bucket holds, but the TAT never runs more than
# the tolerance ahead of now (a token bucket never below zero).
_SPEND = (
    "INSERT INTO rate_buckets (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
    f"SET tat = CASE WHEN {_START} + ? > ? THEN ? ELSE {_START} + ? END"
)


class BucketRepository(Repository):
    """One row (key, tat) per bucket."""

    def tat(self, key: str, within: Cursor | None = None) -> int | None:
        if within is not None:
            row = within.one("SELECT tat FROM rate_buckets WHERE key = ?", (key,))
        else:
            with self._once() as c:
                row = c.one("SELECT tat FROM rate_buckets WHERE key = ?", (key,))
        return None if row is None else int(row[0])

    def tats(self, keys: Sequence[str]) -> dict[str, int]:
        """The TATs of those of `keys` that have a bucket, in one statement."""
        with self._once() as c:
            rows = c.all(
                f"SELECT key, tat FROM rate_buckets WHERE key IN ({marks(len(keys))})", keys
            )
        return {str(r[0]): int(r[1]) for r in rows}

    def take(
        self, key: str, now: int, step: int, tolerance: int, within: Cursor | None = None
    ) -> bool:
        """Move the TAT by `step` if it then stays within `tolerance` of `now`: granted.
        `within`: the caller's transaction, else one of its own."""
        limit = now + tolerance
        params = (key, now + step, now, now, step, now, now, step, limit)
        if within is not None:
            return bool(within.all(_TAKE, params))
        with self._once() as c:
            return bool(c.all(_TAKE, params))

    def spend(self, key: str, now: int, step: int, tolerance: int) -> None:
        """Move the TAT by `step`, at most to `now + tolerance`."""
        limit = now + tolerance
        params = (key, min(now + step, limit), now, now, step, limit, limit, now, now, step)
        with self._once() as c:
            c.run(_SPEND, params)

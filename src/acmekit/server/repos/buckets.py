"""Rate-limit token buckets (server/ratelimits.py decides; this stores)."""

from __future__ import annotations

from collections.abc import Callable

from acmekit.database import from_us, to_us
from acmekit.server.ratelimits import Bucket
from acmekit.server.repos.base import Repository


class BucketRepository(Repository):
    """One row per bucket, changed by compare-and-set on its version."""

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

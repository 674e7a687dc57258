"""Rate-limit buckets: the CA's GCRA (one TAT per bucket, taken by one conditional upsert,
through `RateLimiter` and the real store) against the token bucket it replaced (a SELECT,
then an UPDATE conditional on the row's version, run again on a lost race; kept here
only as the baseline, in a table of its own), on SQLite and PostgreSQL, with one thread
and with several threads on one key.

    .venv/bin/python bench/ratelimit_buckets.py [--takes 400] [--threads 4]

Prints microseconds of wall time per take and, for the token bucket, how many times its
decision ran per take (above 1: compare-and-set retries). Limits are wide enough that
every take is granted, so both do the same work. Short by default.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import fresh_database
from acmekit.database import to_us
from acmekit.server.config import Limit, RateLimits
from acmekit.server.ratelimits import LimitName, RateLimiter, Subject
from acmekit.server.store import Store

LIMIT = Limit(10**9, timedelta(hours=1))
PER_US = LIMIT.count / (3600 * 1_000_000)

_OLD_TABLE = (
    "CREATE TABLE old_buckets (key VARCHAR(255) PRIMARY KEY, tokens FLOAT NOT NULL, "
    "updated BIGINT NOT NULL, version BIGINT NOT NULL)"
)


def token_bucket(store: Store, key: str, calls: list[int]) -> None:
    """The replaced design: read, decide in Python, write if the version is unchanged."""
    now = to_us(datetime.now(UTC))
    for _ in range(50):
        try:
            with store.db.raw() as c:
                calls.append(1)
                row = c.one(
                    "SELECT tokens, updated, version FROM old_buckets WHERE key = ?", (key,)
                )
                if row is None:
                    c.run(
                        "INSERT INTO old_buckets (key, tokens, updated, version) "
                        "VALUES (?, ?, ?, 0)",
                        (key, LIMIT.count - 1.0, now),
                    )
                    return
                tokens = min(LIMIT.count, row[0] + max(0, now - row[1]) * PER_US)
                assert tokens >= 1
                if c.run(
                    "UPDATE old_buckets SET tokens = ?, updated = ?, version = ? "
                    "WHERE key = ? AND version = ?",
                    (tokens - 1, now, row[2] + 1, key, row[2]),
                ):
                    return
        except store.db.integrity:
            continue
    raise RuntimeError("too contended")


def gcra(limiter: RateLimiter) -> Callable[[Store, str, list[int]], None]:
    def take(_store: Store, key: str, _calls: list[int]) -> None:
        limiter.take(LimitName.NEW_ORDERS_PER_ACCOUNT, Subject(key), datetime.now(UTC))

    return take


def run(
    store: Store, how: Callable[[Store, str, list[int]], None], takes: int, threads: int
) -> tuple[float, float]:
    calls: list[int] = []
    each = takes // threads
    gate = threading.Barrier(threads)

    def work(n: int) -> None:
        gate.wait()
        for _ in range(each):
            how(store, "acct" if threads > 1 else f"acct{n}", calls)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    return elapsed / (each * threads) * 1e6, len(calls) / (each * threads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--takes", type=int, default=400)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            with fresh_database(backend, Path(tmp), "bench.db") as url:
                store = Store.from_url(url)
                limiter = RateLimiter(RateLimits(new_orders_per_account=LIMIT), store.buckets)
                with store.db.raw() as c:
                    c.run(_OLD_TABLE)
                for threads in (1, args.threads):
                    for name, how in (("token bucket", token_bucket), ("GCRA", gcra(limiter))):
                        us, calls = run(store, how, args.takes, threads)
                        line = f"{backend:10} {threads} thread(s) {name:12} {us:7.1f} µs/take"
                        if how is token_bucket:
                            line += f", decided {calls:.2f}x per take"
                        print(line, flush=True)
                store.engine.dispose()


if __name__ == "__main__":
    main()

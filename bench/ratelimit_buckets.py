"""Rate-limit buckets: today's token bucket (read, then compare-and-set, retried on a lost
race) against GCRA's one "theoretical arrival time" per bucket taken by one conditional
upsert, on SQLite and PostgreSQL, with one thread and with several threads on one key.

    .venv/bin/python bench/ratelimit_buckets.py [--takes 2000] [--threads 4]

Prints microseconds of wall time per take and, for the token bucket, how many times
`change` ran per take (above 1: compare-and-set retries). Limits are wide enough that
every take is granted, so both do the same work.
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
from acmekit.server.config import Limit
from acmekit.server.ratelimits import Bucket, Rate, take
from acmekit.server.store import Store

RATE = Rate.of(Limit(10**9, timedelta(hours=1)))
INTERVAL_US = 3600 * 1_000_000 // RATE.burst or 1
BURST_US = INTERVAL_US * RATE.burst

_GCRA_TABLE = "CREATE TABLE gcra_buckets (key VARCHAR(255) PRIMARY KEY, tat BIGINT NOT NULL)"
# Take one: the bucket's new TAT is max(TAT, now) + interval, allowed if that is no
# further than the burst ahead of now; a missing bucket is made. One statement.
_GCRA_TAKE = (
    "INSERT INTO gcra_buckets (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
    "SET tat = CASE WHEN gcra_buckets.tat > ? THEN gcra_buckets.tat ELSE ? END + ? "
    "WHERE CASE WHEN gcra_buckets.tat > ? THEN gcra_buckets.tat ELSE ? END + ? <= ?"
)


def token_bucket(store: Store, key: str, calls: list[int]) -> None:
    now = datetime.now(UTC)

    def change(bucket: Bucket | None) -> Bucket | None:
        calls.append(1)
        decision = take(bucket, now, RATE)
        return decision.bucket if decision.allowed else None

    store.buckets.update_bucket(key, change)


def gcra(store: Store, key: str, _calls: list[int]) -> None:
    now = int(time.time() * 1_000_000)
    with store.db.raw() as c:
        params = (key, now + INTERVAL_US, now, now, INTERVAL_US, now, now, INTERVAL_US)
        changed = c.run(_GCRA_TAKE, (*params, now + BURST_US))
    assert changed == 1


def run(
    store: Store, how: Callable[[Store, str, list[int]], None], takes: int, threads: int
) -> tuple[float, float]:
    calls: list[int] = []
    each = takes // threads
    gate = threading.Barrier(threads)

    def work(n: int) -> None:
        gate.wait()
        for _ in range(each):
            how(store, "orders:acct" if threads > 1 else f"orders:{n}", calls)

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
    parser.add_argument("--takes", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            with fresh_database(backend, Path(tmp), "bench.db") as url:
                store = Store.from_url(url)
                with store.db.raw() as c:
                    c.run(_GCRA_TABLE)
                for threads in (1, args.threads):
                    for name, how in (("token bucket", token_bucket), ("GCRA", gcra)):
                        us, calls = run(store, how, args.takes, threads)
                        line = f"{backend:10} {threads} thread(s) {name:12} {us:7.1f} µs/take"
                        if how is token_bucket:
                            line += f", change ran {calls:.2f}x per take"
                        print(line)
                store.engine.dispose()


if __name__ == "__main__":
    main()

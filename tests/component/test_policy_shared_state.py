"""State that several server processes share through one database: rate-limit buckets
taken concurrently through two stores, or from several processes, grant exactly the
burst, and CRL numbers from two publishers only grow. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from cryptography import x509

from acmekit.database import to_us
from acmekit.protocol.problems import AcmeError
from acmekit.server.ca import load_or_create_issuer
from acmekit.server.config import CrlSettings, Limit, RateLimits
from acmekit.server.crl import CrlPublisher
from acmekit.server.ratelimits import LimitName, Rate, RateLimiter, Subject, spend, take
from acmekit.server.store import Store

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LIMIT_20 = Limit(20, timedelta(hours=1))


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[Store, Store]]:
    first, second = Store.from_url(db_url), Store.from_url(db_url)
    yield first, second
    first.engine.dispose()
    second.engine.dispose()


def test_concurrent_takes_grant_exactly_the_burst(stores: tuple[Store, Store]) -> None:
    limits = RateLimits(new_orders_per_account=Limit(20, timedelta(hours=1)))
    limiters = [RateLimiter(limits, s.buckets) for s in stores]

    def attempt(i: int) -> bool:
        try:
            limiters[i % 2].take(LimitName.NEW_ORDERS_PER_ACCOUNT, Subject("acct"), NOW)
        except AcmeError as exc:
            assert exc.problem.retry_after == 180
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = sum(pool.map(attempt, range(60)))
    assert granted == 20


def test_the_stored_buckets_follow_the_pure_arithmetic(stores: tuple[Store, Store]) -> None:
    """The upserts (repos/buckets.py) and ratelimits.take / spend agree, step by step,
    over takes and spends at random times, including times that go backwards."""
    buckets = stores[0].buckets
    rng = random.Random(8555)
    rate = Rate(5, 3600)
    model: int | None = None
    now = to_us(NOW)
    for step in range(300):
        now += rng.choice([0, 0, 1, 100, 719, 720, 721, 5000, -50]) * 1_000_000
        if rng.random() < 0.7:
            expected = take(model, now, rate)
            granted = buckets.take("k", now, rate.interval_us, rate.tolerance_us)
            assert granted == expected.allowed, step
            model = expected.tat
        else:
            buckets.spend("k", now, rate.interval_us, rate.tolerance_us)
            model = spend(model, now, rate)
        assert buckets.tat("k") == model, step


def _take_in_a_process(url: str, tries: int, start: Barrier, out: Queue[tuple[int, int]]) -> None:
    """One CA process: its own store, `tries` takes from the shared bucket."""
    store = Store.from_url(url)
    limiter = RateLimiter(RateLimits(new_orders_per_account=LIMIT_20), store.buckets)
    granted = refused_right = 0
    start.wait()
    for _ in range(tries):
        try:
            limiter.take(LimitName.NEW_ORDERS_PER_ACCOUNT, Subject("acct"), NOW)
            granted += 1
        except AcmeError as exc:
            refused_right += exc.problem.retry_after == 180  # one interval: 1 h / 20
    store.engine.dispose()
    out.put((granted, refused_right))


def test_takes_from_several_processes_grant_exactly_the_burst(db_url: str) -> None:
    Store.from_url(db_url).engine.dispose()  # upgraded once, before the processes start
    ctx = multiprocessing.get_context("spawn")
    workers, tries = 4, 15
    start, out = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_take_in_a_process, args=(db_url, tries, start, out))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert sum(g for g, _ in results) == 20
    assert sum(r for _, r in results) == workers * tries - 20
    # and the bucket refills: one more an interval later
    store = Store.from_url(db_url)
    limiter = RateLimiter(RateLimits(new_orders_per_account=LIMIT_20), store.buckets)
    limiter.take(LimitName.NEW_ORDERS_PER_ACCOUNT, Subject("acct"), NOW + timedelta(minutes=3))
    store.engine.dispose()


def test_crl_numbers_only_grow_across_publishers(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    issuer = load_or_create_issuer(tmp_path, NOW - timedelta(days=1))
    settings = CrlSettings(shards=2)
    times = iter(NOW + timedelta(seconds=n) for n in range(100))
    publishers = [
        CrlPublisher(settings, "http://127.0.0.1:1", s, issuer, lambda: next(times)) for s in stores
    ]
    numbers = []
    for n in range(6):
        rec = publishers[n % 2].regenerate(1)
        crl = x509.load_der_x509_crl(rec.der)
        numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert publishers[0].der(1) == publishers[1].der(1)
    assert publishers[0].der(2) is None  # no such shard


def test_a_refund_moves_the_tat_back_never_below_now(stores: tuple[Store, Store]) -> None:
    """A take given back (its issuance failed) is a take again; a refund of a bucket
    that has refilled in the meantime leaves it full, not fuller."""
    limits = RateLimits(duplicate_certificates=Limit(2, timedelta(days=7)))
    first, second = (RateLimiter(limits, s.buckets) for s in stores)
    name, subject = LimitName.DUPLICATE_CERTIFICATES, Subject("names")
    first.take(name, subject, NOW)
    second.take(name, subject, NOW)
    with pytest.raises(AcmeError):
        first.take(name, subject, NOW)
    second.refund(name, subject, NOW)
    first.take(name, subject, NOW)  # the refunded one
    with pytest.raises(AcmeError):
        second.take(name, subject, NOW)
    interval = timedelta(days=3.5)
    assert stores[0].buckets.tat(f"{name}:names") == to_us(NOW + 2 * interval)
    # much later, refunds do not bank more than the burst
    later = NOW + timedelta(days=30)
    for _ in range(3):
        first.refund(name, subject, later)
    assert stores[0].buckets.tat(f"{name}:names") == to_us(later)
    first.take(name, subject, later)
    first.take(name, subject, later)
    with pytest.raises(AcmeError):
        first.take(name, subject, later)


def test_skewed_process_clocks_do_not_widen_the_burst(stores: tuple[Store, Store]) -> None:
    """Two CA processes whose clocks differ by an hour share a limit of 5 an hour: each
    judging by its own clock would together admit about 5 more (skew / interval); by
    the database's clock, they admit the burst."""
    limits = RateLimits(new_orders_per_account=Limit(5, timedelta(hours=1)))
    fast, slow = (RateLimiter(limits, s.buckets, database_clock=True) for s in stores)
    real = datetime.now(UTC)
    granted = 0
    for n in range(20):
        limiter, now = (fast, real + timedelta(hours=1)) if n >= 10 else (slow, real)
        try:
            limiter.take(LimitName.NEW_ORDERS_PER_ACCOUNT, Subject("skewed"), now)
            granted += 1
        except AcmeError as exc:
            # Retry-After is reckoned on the database's clock too: one interval at most
            assert exc.problem.retry_after is not None and exc.problem.retry_after <= 720
    assert granted == 5


def test_skewed_process_clocks_by_their_own_clocks_widen_the_burst(
    stores: tuple[Store, Store],
) -> None:
    """The hole the database's clock closes, shown with each process's own clock."""
    limits = RateLimits(new_orders_per_account=Limit(5, timedelta(hours=1)))
    fast, slow = (RateLimiter(limits, s.buckets) for s in stores)
    granted = 0
    for n in range(20):
        limiter, now = (fast, NOW + timedelta(hours=1)) if n >= 10 else (slow, NOW)
        try:
            limiter.take(LimitName.NEW_ORDERS_PER_ACCOUNT, Subject("skewed"), now)
            granted += 1
        except AcmeError:
            pass
    assert granted == 10  # the fast one sees the slow one's takes an hour old

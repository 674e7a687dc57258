"""State that several server processes share through one database: rate-limit buckets
taken concurrently through two stores grant exactly the burst, and CRL numbers from two
publishers only grow. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from acmekit.protocol.problems import AcmeError
from acmekit.server.ca import load_or_create_issuer
from acmekit.server.config import CrlSettings, Limit, RateLimits
from acmekit.server.crl import CrlPublisher
from acmekit.server.ratelimits import LimitName, RateLimiter, Subject
from acmekit.server.store import Store

NOW = datetime(2026, 6, 1, tzinfo=UTC)


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

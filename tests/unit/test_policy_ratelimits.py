"""Token-bucket math (pure) and what the limits count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.config import Limit
from acmekit.server.ratelimits import (
    Bucket,
    Rate,
    available,
    check,
    name_set_key,
    spend,
    take,
    wait_seconds,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEEK = Rate(50, 7 * 86400)  # certificates per registered domain
HOUR5 = Rate(5, 3600)  # failed validations


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_rate_of_limit_and_override() -> None:
    limit = Limit(50, timedelta(days=7))
    assert Rate.of(limit) == Rate(50, 604800.0)
    assert Rate.of(limit, 500) == Rate(500, 604800.0)
    assert Rate(50, 604800).per_second == pytest.approx(50 / 604800)


@pytest.mark.parametrize(
    ("bucket", "now", "expected"),
    [
        (None, at(0), 50.0),  # a missing bucket is full
        (Bucket(0, at(0)), at(0), 0.0),
        (Bucket(0, at(0)), at(12096), 1.0),  # one token per 7d/50
        (Bucket(0, at(0)), at(12096 * 10), 10.0),
        (Bucket(0, at(0)), at(10**9), 50.0),  # never above the burst
        (Bucket(49.5, at(0)), at(12096), 50.0),
        (Bucket(3, at(100)), at(0), 3.0),  # a clock going backwards adds nothing
        (Bucket(-2, at(0)), at(0), 0.0),  # never negative
    ],
)
def test_available(bucket: Bucket | None, now: datetime, expected: float) -> None:
    assert available(bucket, now, WEEK) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("tokens", "rate", "cost", "expected"),
    [
        (1.0, WEEK, 1, 0),
        (5.0, WEEK, 1, 0),
        (0.0, WEEK, 1, 12096),
        (0.5, WEEK, 1, 6048),
        (0.9999, WEEK, 1, 2),  # rounded up to whole seconds
        (0.0, HOUR5, 1, 720),
        (0.0, HOUR5, 2, 1440),
        (0.0, Rate(3, 3 * 3600), 1, 3600),
        (0.0, Rate(0, 3600), 1, 3600),  # a limit of zero: a whole period
        (0.0, Rate(2, 60), 3, 60),  # more than the bucket holds: a whole period
    ],
)
def test_wait_seconds(tokens: float, rate: Rate, cost: int, expected: int) -> None:
    assert wait_seconds(tokens, rate, cost) == expected


def test_take_until_empty_then_refuse_with_retry_after() -> None:
    bucket: Bucket | None = None
    for n in range(50):
        decision = take(bucket, at(0), WEEK)
        assert decision.allowed and decision.retry_after == 0
        bucket = decision.bucket
        assert bucket.tokens == pytest.approx(49 - n)
    refused = take(bucket, at(0), WEEK)
    assert not refused.allowed and refused.retry_after == 12096
    assert refused.bucket.tokens == pytest.approx(0.0)
    later = take(bucket, at(6048), WEEK)
    assert not later.allowed and later.retry_after == 6048
    assert take(bucket, at(12096), WEEK).allowed


def test_refused_take_does_not_change_the_bucket_it_returns_for_writing() -> None:
    bucket = Bucket(0.25, at(0))
    refused = take(bucket, at(0), WEEK)
    assert not refused.allowed
    assert refused.bucket.tokens == pytest.approx(0.25)


def test_check_takes_nothing() -> None:
    bucket = Bucket(1.0, at(0))
    assert check(bucket, at(0), WEEK).allowed
    assert check(bucket, at(0), WEEK).bucket.tokens == pytest.approx(1.0)
    assert not check(Bucket(0.0, at(0)), at(0), WEEK).allowed


def test_spend_never_goes_below_zero() -> None:
    assert spend(None, at(0), WEEK).tokens == pytest.approx(49.0)
    assert spend(Bucket(0.5, at(0)), at(0), WEEK).tokens == 0.0
    assert spend(Bucket(0.0, at(0)), at(0), WEEK, cost=3).tokens == 0.0
    assert spend(Bucket(10, at(0)), at(5), WEEK).updated == at(5)


def test_steady_refill_not_windows() -> None:
    """Five failures an hour: after the fifth, one more is allowed every 12 minutes."""
    bucket: Bucket | None = None
    for _ in range(5):
        bucket = spend(bucket, at(0), HOUR5)
    assert not take(bucket, at(719), HOUR5).allowed
    first = take(bucket, at(720), HOUR5)
    assert first.allowed
    assert not take(first.bucket, at(721), HOUR5).allowed
    assert take(first.bucket, at(1440), HOUR5).allowed


def _dns(*names: str) -> list[Identifier]:
    return [Identifier(IdentifierType.DNS, n) for n in names]


def test_name_sets() -> None:
    same = name_set_key(_dns("b.x.com", "A.x.com"))
    assert same == name_set_key(_dns("a.x.com", "b.x.com", "a.x.com"))
    assert same != name_set_key(_dns("a.x.com"))
    ip = [Identifier(IdentifierType.IP, "10.0.0.1")]
    assert name_set_key(ip) != name_set_key(_dns("10.0.0.1"))

"""GCRA math (pure, integer microseconds) and what the limits count."""

from __future__ import annotations

from datetime import timedelta

import pytest

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.config import Limit
from acmekit.server.ratelimits import Rate, name_set_key, spend, take, tokens, wait_seconds

S = 1_000_000  # microseconds in a second
T0 = 1_800_000_000 * S
WEEK = Rate(50, 7 * 86400)  # certificates per registered domain: one per 12096 s
HOUR5 = Rate(5, 3600)  # failed validations: one per 720 s


def at(seconds: float) -> int:
    return T0 + round(seconds * S)


def test_rate_of_limit_and_override() -> None:
    limit = Limit(50, timedelta(days=7))
    assert Rate.of(limit) == Rate(50, 604800.0)
    assert Rate.of(limit, 500) == Rate(500, 604800.0)
    assert WEEK.interval_us == 12096 * S and WEEK.tolerance_us == 604800 * S
    assert Rate(3, 1e-6).interval_us == 1  # never a zero interval
    assert Rate(7, 10).interval_us == 1_428_572  # rounded up: never above the rate
    assert Rate(7, 10).tolerance_us >= 10 * S
    with pytest.raises(ValueError):
        _ = Rate(0, 3600).interval_us


def test_a_new_bucket_lets_the_whole_burst_through_at_once() -> None:
    tat: int | None = None
    for n in range(50):
        decision = take(tat, at(0), WEEK)
        assert decision.allowed and decision.retry_after == 0
        tat = decision.tat
        assert tat == at(12096 * (n + 1))
        assert tokens(tat, at(0), WEEK) == pytest.approx(49 - n)
    refused = take(tat, at(0), WEEK)
    assert not refused.allowed and refused.retry_after == 12096
    assert refused.tat == tat  # a refusal moves nothing


def test_refill_is_steady_and_retry_after_counts_down() -> None:
    tat = at(604800)  # empty at 0: full again a week later
    assert not take(tat, at(6048), WEEK).allowed
    assert take(tat, at(6048), WEEK).retry_after == 6048
    assert take(tat, at(12095.5), WEEK).retry_after == 1  # rounded up to whole seconds
    granted = take(tat, at(12096), WEEK)
    assert granted.allowed and granted.tat == at(604800 + 12096)
    assert tokens(tat, at(12096 * 10), WEEK) == pytest.approx(10.0)
    assert tokens(tat, at(10**7), WEEK) == 50.0  # never above the burst


def test_an_idle_bucket_is_full_whatever_its_old_tat() -> None:
    long_ago = at(-(10**6))
    decision = take(long_ago, at(0), WEEK)
    assert decision.allowed and decision.tat == at(12096)  # from now, not from the past
    assert tokens(long_ago, at(0), WEEK) == 50.0
    assert tokens(None, at(0), WEEK) == 50.0


@pytest.mark.parametrize(
    ("rate", "cost", "expected"),
    [
        (HOUR5, 1, 720),
        (HOUR5, 2, 1440),
        (Rate(3, 3 * 3600), 1, 3600),
        (Rate(0, 3600), 1, 3600),  # a limit of zero: a whole period
        (Rate(2, 60), 3, 60),  # more than the burst: a whole period
        (Rate(5, 0), 1, 0),  # no period: never refused
    ],
)
def test_wait_from_an_empty_bucket(rate: Rate, cost: int, expected: int) -> None:
    empty = None if rate.unlimited or rate.burst == 0 else at(0) + rate.tolerance_us
    assert wait_seconds(empty, at(0), rate, cost) == expected


def test_spend_counts_work_done_but_never_past_empty() -> None:
    assert spend(None, at(0), WEEK) == at(12096)
    full_ahead = at(0) + WEEK.tolerance_us
    assert spend(full_ahead, at(0), WEEK) == full_ahead  # already empty: stays empty
    assert spend(full_ahead - 5 * S, at(0), WEEK, cost=3) == full_ahead
    assert spend(at(100), at(0), Rate(5, 0)) == at(100)  # unlimited: nothing counted


def test_five_failures_an_hour_then_one_every_twelve_minutes() -> None:
    tat: int | None = None
    for _ in range(5):
        tat = spend(tat, at(0), HOUR5)
    assert not take(tat, at(719), HOUR5).allowed
    first = take(tat, at(720), HOUR5)
    assert first.allowed
    assert not take(first.tat, at(721), HOUR5).allowed
    assert take(first.tat, at(1440), HOUR5).allowed


def test_a_clock_going_backwards_grants_nothing_extra() -> None:
    tat = take(None, at(100), HOUR5).tat
    for _ in range(4):
        tat = take(tat, at(100), HOUR5).tat
    assert not take(tat, at(50), HOUR5).allowed
    assert take(tat, at(50), HOUR5).retry_after == 720 + 50


def _dns(*names: str) -> list[Identifier]:
    return [Identifier(IdentifierType.DNS, n) for n in names]


def test_name_sets() -> None:
    same = name_set_key(_dns("b.x.com", "A.x.com"))
    assert same == name_set_key(_dns("a.x.com", "b.x.com", "a.x.com"))
    assert same != name_set_key(_dns("a.x.com"))
    ip = [Identifier(IdentifierType.IP, "10.0.0.1")]
    assert name_set_key(ip) != name_set_key(_dns("10.0.0.1"))

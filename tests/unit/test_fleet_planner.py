"""The fleet's planner: renewal times, jitter spread, retry back-off, failing threshold."""

from __future__ import annotations

from collections import Counter

import pytest

from acmekit.fleet import planner
from acmekit.fleet.model import SiteState
from acmekit.fleet.planner import DAY, HOUR, MINUTE, AriWindow, Policy

NB = 1_700_000_000 * planner.SECOND
NA = NB + 90 * DAY


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [(0.0, NB + 60 * DAY), (0.5, NB + 60 * DAY + 15 * DAY // 2), (0.999999, NB + 75 * DAY - 1)],
)
def test_renewal_is_in_the_last_third_spread_over_a_sixth(jitter: float, expected: int) -> None:
    at = planner.renewal_time(NB, NA, jitter)
    assert abs(at - expected) <= 15 * DAY * 1e-5
    assert NB + 60 * DAY <= at < NB + 75 * DAY


def test_short_certificates_renew_at_half_their_lifetime_plus_the_spread() -> None:
    na = NB + 6 * DAY  # under ten days: due with half left, as the client renews it
    assert abs(planner.renewal_time(NB, na, 0.0) - (NB + 3 * DAY)) <= 1
    assert abs(planner.renewal_time(NB, na, 1.0) - (NB + 4 * DAY)) <= 1


def test_ari_window_wins_and_jitter_places_inside_it() -> None:
    window = AriWindow(NB + 10 * DAY, NB + 12 * DAY)
    assert planner.renewal_time(NB, NA, 0.0, ari=window) == window.start
    assert planner.renewal_time(NB, NA, 0.5, ari=window) == NB + 11 * DAY
    empty = AriWindow(NB + 10 * DAY, NB + 9 * DAY)
    assert planner.renewal_time(NB, NA, 0.7, ari=empty) == empty.start


LIFETIME_RULE = (NB + 60 * DAY, NB + 75 * DAY)  # the last third, spread over a sixth


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.999999])
def test_an_earlier_window_brings_renewal_forward_inside_it(jitter: float) -> None:
    window = AriWindow(NB + 30 * DAY, NB + 32 * DAY)
    at = planner.renewal_time(NB, NA, jitter, ari=window)
    assert window.start <= at < window.end
    assert at == window.start + int(2 * DAY * jitter)
    assert at < planner.renewal_time(NB, NA, jitter) and at < LIFETIME_RULE[0]


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.999999])
def test_a_later_window_puts_renewal_off_inside_it(jitter: float) -> None:
    window = AriWindow(NB + 80 * DAY, NB + 82 * DAY)
    at = planner.renewal_time(NB, NA, jitter, ari=window)
    assert window.start <= at < window.end
    assert at == window.start + int(2 * DAY * jitter)
    assert at > planner.renewal_time(NB, NA, jitter) and at >= LIFETIME_RULE[1]


def test_the_same_site_keeps_its_place_whatever_the_window() -> None:
    jitter = planner.site_jitter("3f9c2a61d0b84e77")
    for start, width in ((NB + 5 * DAY, HOUR), (NB + 61 * DAY, 2 * DAY), (NB + 80 * DAY, DAY)):
        at = planner.renewal_time(NB, NA, jitter, ari=AriWindow(start, start + width))
        assert at == start + int(width * jitter)


@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [(90 * DAY, DAY), (10 * DAY, DAY), (6 * DAY, 6 * DAY // 10), (HOUR, HOUR // 10)],
)
def test_a_window_past_expiry_is_cut_to_a_margin_before_it(lifetime: int, margin: int) -> None:
    na = NB + lifetime
    for window in (AriWindow(na - margin // 2, na + DAY), AriWindow(na + DAY, na + 3 * DAY)):
        for jitter in (0.0, 0.5, 0.999999):
            assert planner.renewal_time(NB, na, jitter, ari=window) == na - margin
    inside = AriWindow(na - 2 * margin, na - margin)  # wholly before the cut: untouched
    assert planner.renewal_time(NB, na, 0.5, ari=inside) == na - 2 * margin + margin // 2


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999999])
def test_a_window_in_the_past_means_renew_now(jitter: float) -> None:
    now = NB + 20 * DAY
    window = AriWindow(now - HOUR, now - HOUR // 2)  # what our CA says of a revoked one
    at = planner.renewal_time(NB, NA, jitter, ari=window)
    assert at < now and planner.is_due(now, at)
    assert planner.next_action_at(now, at) == now


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999999])
def test_no_window_keeps_the_lifetime_rule(jitter: float) -> None:
    at = planner.renewal_time(NB, NA, jitter, ari=None)
    assert at == planner.renewal_time(NB, NA, jitter)
    assert LIFETIME_RULE[0] <= at < LIFETIME_RULE[1]


def test_site_jitter_is_deterministic_and_uniform() -> None:
    assert planner.site_jitter("abc") == planner.site_jitter("abc")
    values = [planner.site_jitter(f"site-{i}") for i in range(20_000)]
    assert all(0.0 <= v < 1.0 for v in values)
    deciles = Counter(int(v * 10) for v in values)
    assert set(deciles) == set(range(10))
    assert all(1_700 <= n <= 2_300 for n in deciles.values()), deciles


def test_a_million_certificates_from_one_hour_spread_over_days() -> None:
    # Hour buckets of the renewal times of 100,000 certificates issued in the same hour.
    hours = Counter(
        (planner.renewal_time(NB, NA, planner.site_jitter(str(i))) - NB) // HOUR
        for i in range(100_000)
    )
    assert min(hours) >= 60 * 24 and max(hours) < 75 * 24
    assert len(hours) == 15 * 24
    assert max(hours.values()) <= 2 * 100_000 / (15 * 24)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(1, MINUTE), (2, 2 * MINUTE), (3, 4 * MINUTE), (9, 256 * MINUTE), (10, 6 * HOUR),
     (11, 6 * HOUR), (500, 6 * HOUR), (0, MINUTE)],
)  # fmt: skip
def test_retry_doubles_from_a_minute_to_six_hours(failures: int, delay: int) -> None:
    assert planner.retry_delay(failures, NB) == delay


def test_retry_quickens_near_expiry_but_not_below_a_minute() -> None:
    now = NA - 4 * HOUR
    assert planner.retry_delay(20, now, NA) == 2 * HOUR
    assert planner.retry_delay(20, NA - 30, NA) == MINUTE
    assert planner.retry_delay(20, NA + HOUR, NA) == MINUTE
    assert planner.retry_delay(2, now, NA) == 2 * MINUTE


def test_retry_policy_is_configurable() -> None:
    policy = Policy(retry_base=10 * planner.SECOND, retry_cap=MINUTE)
    assert [planner.retry_delay(n, NB, policy=policy) for n in (1, 2, 3, 4)] == [
        10 * planner.SECOND,
        20 * planner.SECOND,
        40 * planner.SECOND,
        MINUTE,
    ]


def test_next_action() -> None:
    now = NB + DAY
    assert planner.next_action_at(now, None) == now  # no certificate yet: now
    assert planner.next_action_at(now, NB + 60 * DAY) == NB + 60 * DAY
    assert planner.next_action_at(now, NB) == now  # overdue: now, never the past
    assert planner.next_action_at(now, NB + 60 * DAY, failure_count=3) == now + 4 * MINUTE
    assert planner.next_action_at(now, None, 1, NA) == now + MINUTE


def test_is_due() -> None:
    assert planner.is_due(NB, None)
    assert planner.is_due(NB, NB)
    assert not planner.is_due(NB, NB + 1)


@pytest.mark.parametrize(
    ("failures", "has_cert", "state"),
    [(1, False, SiteState.PENDING), (2, True, SiteState.ACTIVE), (3, False, SiteState.FAILING),
     (3, True, SiteState.FAILING), (99, True, SiteState.FAILING)],
)  # fmt: skip
def test_failing_threshold(failures: int, has_cert: bool, state: SiteState) -> None:
    assert planner.state_after_failure(failures, has_cert) == state

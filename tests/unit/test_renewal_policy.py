"""The renewal policy: a third of the lifetime (half under ten days), ARI windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from acmekit.client.renewal import (
    AriWindow,
    ari_renewal_time,
    decide,
    latest_renewal,
    parse_interval,
    renewal_time,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_ninety_day_certificate_is_due_with_thirty_days_left() -> None:
    end = START + timedelta(days=90)
    early = decide(START, end, START + timedelta(days=59))
    assert not early.due and early.next_check == START + timedelta(days=60)
    assert decide(START, end, START + timedelta(days=60)).due
    late = decide(START, end, end + timedelta(seconds=1))
    assert late.due and late.reason == "expired"


def test_short_lived_certificate_renews_at_half() -> None:
    end = START + timedelta(days=6)
    assert not decide(START, end, START + timedelta(days=2, hours=23)).due
    assert decide(START, end, START + timedelta(days=3)).due


def test_renew_before_expiry_overrides_the_fraction() -> None:
    end = START + timedelta(days=90)
    margin = parse_interval("10 days")
    assert not decide(START, end, end - timedelta(days=11), renew_before_expiry=margin).due
    assert decide(START, end, end - timedelta(days=10), renew_before_expiry=margin).due


def test_ari_window_picks_a_time_inside_and_honours_retry_after() -> None:
    end = START + timedelta(days=90)
    window = AriWindow(START + timedelta(days=40), START + timedelta(days=42))
    assert ari_renewal_time(window, 0.0) == window.start
    assert ari_renewal_time(window, 1.0) == window.end
    before = decide(
        START, end, START + timedelta(days=10), ari=window, ari_retry_after=timedelta(hours=6)
    )
    assert not before.due
    assert before.next_check == START + timedelta(days=10, hours=6)
    assert decide(START, end, START + timedelta(days=41, hours=1), ari=window, rand=0.5).due
    past = AriWindow(START - timedelta(days=2), START - timedelta(days=1))
    assert decide(START, end, START, ari=past).due


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30 days", timedelta(days=30)),
        ("1 week", timedelta(weeks=1)),
        ("12 hours", timedelta(hours=12)),
    ],
)
def test_parse_interval(text: str, expected: timedelta) -> None:
    assert parse_interval(text) == expected


def test_parse_interval_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_interval("soon")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", timedelta(days=30)),  # a bare number is days, as certbot reads it
        ("30d", timedelta(days=30)),
        ("30 days 12 hours", timedelta(days=30, hours=12)),
        ("2 wks 1 day", timedelta(days=15)),
        ("90 mins", timedelta(minutes=90)),
        ("1 month", timedelta(days=31)),  # from 1 January: calendar months
        ("1 mo 1 day", timedelta(days=32)),
        ("1 year", timedelta(days=365)),
    ],
)
def test_parse_interval_reads_what_certbot_reads(text: str, expected: timedelta) -> None:
    assert parse_interval(text, START) == expected


def test_a_month_from_the_last_of_a_month_ends_on_the_next_ones_last() -> None:
    end_of_january = datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_interval("1 month", end_of_january) == timedelta(days=28)
    with pytest.raises(ValueError, match="counts months"):
        parse_interval("1 month")


@pytest.mark.parametrize("text", ["99999999999 days", "999999999 days", "40000 years"])
def test_parse_interval_refuses_an_interval_too_long_to_count_with(text: str) -> None:
    with pytest.raises(ValueError, match="longer than"):
        parse_interval(text, START)


@pytest.mark.parametrize("text", ["", "30 fortnights", "-5 days", "30 days soon", "1.5 days"])
def test_parse_interval_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_interval(text, START)


def test_renewal_time_is_the_lifetime_rule_without_a_window() -> None:
    end = START + timedelta(days=90)
    assert renewal_time(START, end) == START + timedelta(days=60)
    assert renewal_time(START, START + timedelta(days=6)) == START + timedelta(days=3)
    ten = timedelta(days=10)
    assert renewal_time(START, end, renew_before_expiry=ten) == end - ten


@pytest.mark.parametrize("days", [5, 80])  # earlier or later than the lifetime rule
def test_an_ari_window_wins_over_the_lifetime_rule(days: int) -> None:
    end = START + timedelta(days=90)
    window = AriWindow(START + timedelta(days=days), START + timedelta(days=days + 2))
    at = renewal_time(START, end, ari=window, rand=0.25, renew_before_expiry=timedelta(days=1))
    assert at == window.start + timedelta(hours=12)


@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [
        (timedelta(days=90), timedelta(days=1)),
        (timedelta(days=10), timedelta(days=1)),
        (timedelta(days=6), timedelta(hours=14, minutes=24)),
        (timedelta(hours=1), timedelta(minutes=6)),
    ],
)
def test_a_window_past_expiry_is_cut_a_margin_before_it(
    lifetime: timedelta, margin: timedelta
) -> None:
    end = START + lifetime
    assert latest_renewal(START, end) == end - margin
    for window in (AriWindow(end - margin / 2, end + lifetime), AriWindow(end, end + lifetime)):
        for rand in (0.0, 0.5, 1.0):
            assert renewal_time(START, end, ari=window, rand=rand) == end - margin
    assert decide(START, end, end - margin, ari=AriWindow(end, end + lifetime)).due
    inside = AriWindow(end - 2 * margin, end - margin)
    assert renewal_time(START, end, ari=inside, rand=0.5) == end - margin - margin / 2


def test_renew_before_expiry_counts_beside_an_ari_window() -> None:
    """certbot's `should_autorenew`: due when either the window or the lineage's own
    margin says so; the window still decides when it comes first."""
    end = START + timedelta(days=90)
    window = AriWindow(START + timedelta(days=60), START + timedelta(days=62))
    margin = timedelta(days=45)
    assert renewal_time(START, end, ari=window, rand=0.0, renew_before_expiry=margin) == (
        end - margin
    )
    before = decide(
        START, end, START + timedelta(days=44), ari=window, rand=0.0, renew_before_expiry=margin
    )
    assert not before.due and not before.by_ari
    assert before.next_check == START + timedelta(days=44, hours=6)  # the window may move
    due = decide(
        START, end, START + timedelta(days=45), ari=window, rand=0.0, renew_before_expiry=margin
    )
    assert due.due and not due.by_ari and due.reason == "in the renewal period"
    short = timedelta(days=10)
    by_window = decide(
        START, end, START + timedelta(days=61), ari=window, rand=0.5, renew_before_expiry=short
    )
    assert by_window.due and by_window.by_ari

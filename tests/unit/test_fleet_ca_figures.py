"""The pure parts of the fleet-wide figures per CA and of waiting for a CA slot: hourly
buckets and the window over them, adding attempts up, the status page's table and the
`/metrics` gauges rendered from them, and the back-off between looks for a free slot."""

from __future__ import annotations

from acmekit.fleet.cas import SLOT_POLL_FIRST, SLOT_POLL_MAX, slot_poll_delay
from acmekit.fleet.metrics import (
    CaWindow,
    FleetMetrics,
    add_attempt,
    attempt_bucket,
    bucket_hour,
    summarize,
    window_label,
    window_start,
)
from acmekit.fleet.model import CaStatsBucket, SiteState
from acmekit.fleet.planner import DAY, HOUR, MINUTE
from acmekit.fleet.status import StatusReport, render

H = 1_900_000_800 * 1_000_000 // HOUR * HOUR  # the start of an hour
NOW = H + 25 * MINUTE


def test_buckets_are_hours_and_the_window_is_the_last_24_of_them() -> None:
    assert bucket_hour(NOW) == bucket_hour(H) == H
    assert bucket_hour(H - 1) == H - HOUR
    assert window_start(NOW) == H - 23 * HOUR  # the current hour and the 23 before it
    assert window_start(NOW, HOUR) == H
    assert window_start(NOW, 6 * HOUR) == H - 5 * HOUR
    assert (window_label(DAY), window_label(HOUR)) == ("24 hours", "1 hour")


def test_attempts_fold_into_one_bucket_per_ca_and_hour() -> None:
    pending: dict[tuple[str, int], CaStatsBucket] = {}
    for ca, at, issued, seconds in [
        ("a", NOW, True, 2.0),
        ("a", NOW + MINUTE, True, 5.0),
        ("a", NOW + 2 * MINUTE, False, 40.0),
        ("a", NOW + HOUR, True, 1.0),
        ("b", NOW, False, 3.0),
    ]:
        add_attempt(pending, attempt_bucket(ca, at, issued, seconds))
    assert pending == {
        ("a", H): CaStatsBucket("a", H, 2, 1, 7.0, 40.0, 5.0),
        ("a", H + HOUR): CaStatsBucket("a", H + HOUR, 1, 0, 1.0, 0.0, 1.0),
        ("b", H): CaStatsBucket("b", H, 0, 1, 0.0, 3.0, 0.0),
    }
    a, b = summarize(pending.values())
    assert (a.ca, a.issued, a.failed, a.max_seconds) == ("a", 3, 1, 5.0)
    assert a.success_rate == 0.75 and a.mean_seconds == 8.0 / 3
    assert (b.success_rate, b.mean_seconds) == (0.0, 0.0)  # no issued order: no time
    # The CAs in use come first, by preference; any others after, by name.
    assert [w.ca for w in summarize(pending.values(), ["b", "z"])] == ["b", "a"]


RECENT = [
    CaWindow("le", 3, 1, 12.0, 40.0, 6.0),
    CaWindow('<b>"odd"</b>', 1, 0, 1.5, 0.0, 1.5),
]


def _report(recent: list[CaWindow], window: int = DAY) -> StatusReport:
    counts = dict.fromkeys(SiteState, 0)
    return StatusReport(NOW, counts, [], [], [], [], recent=recent, window=window)


def test_the_status_page_shows_the_fleets_figures_escaped() -> None:
    page = render(_report(RECENT))
    assert "<h2>Certificate authorities, whole fleet (last 24 hours)</h2>" in page
    assert (
        '<tr><td>le</td><td class="n">3</td><td class="n">1</td><td class="n">75.0%</td>'
        '<td class="n">4.00</td><td class="n">6.00</td></tr>'
    ) in page
    assert "<td>&lt;b&gt;&quot;odd&quot;&lt;/b&gt;</td>" in page
    assert '<b>"odd"' not in page
    assert "No orders in the last 6 hours." in render(_report([], 6 * HOUR))


def test_metrics_carry_the_fleets_figures_as_gauges() -> None:
    text = FleetMetrics().render(dict.fromkeys(SiteState, 0), RECENT, DAY)
    lines = text.splitlines()
    for line in (
        "# TYPE acmekit_fleet_ca_recent_orders gauge",
        "acmekit_fleet_ca_recent_window_seconds 86400",
        'acmekit_fleet_ca_recent_orders{ca="le",outcome="success"} 3',
        'acmekit_fleet_ca_recent_orders{ca="le",outcome="failure"} 1',
        'acmekit_fleet_ca_recent_success_ratio{ca="le"} 0.75',
        'acmekit_fleet_ca_recent_issue_seconds_mean{ca="le"} 4',
        'acmekit_fleet_ca_recent_issue_seconds_max{ca="le"} 6',
        'acmekit_fleet_ca_recent_orders{ca="<b>\\"odd\\"</b>",outcome="success"} 1',
    ):
        assert line in lines, line
    assert len(set(lines)) == len(lines)  # each HELP and TYPE once
    assert "over the last 24 hours" in text


def test_looks_for_a_free_slot_back_off_to_a_second_and_spread() -> None:
    assert slot_poll_delay(1, 0.0) == SLOT_POLL_FIRST / 2
    assert slot_poll_delay(1, 0.999) < SLOT_POLL_FIRST
    assert slot_poll_delay(2, 0.0) == SLOT_POLL_FIRST
    assert [slot_poll_delay(n, 0.5) for n in (6, 7, 50)] == [0.75 * SLOT_POLL_MAX] * 3
    assert all(slot_poll_delay(n, j) <= SLOT_POLL_MAX for n in range(1, 40) for j in (0, 0.99))

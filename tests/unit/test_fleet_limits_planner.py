"""The planner's choice of CA: pure functions of health, limits, usage and now."""

from __future__ import annotations

from acmekit.fleet import planner
from acmekit.fleet.planner import CaView, choose_cas, refill_time

T0 = 1_700_000_000_000_000
DAY = planner.DAY


def test_refill_time_is_when_the_oldest_counted_certificate_leaves_the_window() -> None:
    assert refill_time([], 3, 7 * DAY, T0) == T0
    assert refill_time([T0 - DAY, T0 - 2 * DAY], 3, 7 * DAY, T0) == T0
    times = [T0 - 3 * DAY, T0 - DAY, T0 - 2 * DAY]
    assert refill_time(times, 3, 7 * DAY, T0) == T0 - 3 * DAY + 7 * DAY
    assert refill_time([T0 - 8 * DAY, *times], 3, 7 * DAY, T0) == T0 + 4 * DAY
    assert refill_time(times, 2, 7 * DAY, T0) == T0 + 5 * DAY


def test_cas_are_tried_in_order_skipping_the_down_and_the_full() -> None:
    full = {"a.test": [T0 - DAY, T0 - DAY, T0 - DAY]}
    views = [
        CaView("one", limit=3, usage=full),
        CaView("two", down_until=T0 + 10),
        CaView("three", limit=50),
        CaView("four", down_until=T0 - 1),
    ]
    assert choose_cas(views, ["a.test"], T0).order == ("three", "four")
    assert choose_cas(views, ["b.test"], T0).order == ("one", "three", "four")
    # A renewal replacing the first CA's own certificate is not held to its limit.
    assert choose_cas(views, ["a.test"], T0, exempt="one").order == ("one", "three", "four")


def test_when_no_ca_has_room_the_plan_is_to_wait_for_the_first_refill() -> None:
    views = [
        CaView("one", limit=1, usage={"a.test": [T0 - DAY]}),
        CaView("two", limit=1, usage={"a.test": [T0 - 3 * DAY]}),
        CaView("three", down_until=T0 + 5 * DAY, limit=1, usage={"a.test": [T0]}),
    ]
    plan = choose_cas(views, ["a.test"], T0)
    assert plan.order == () and plan.wait_until == T0 + 4 * DAY
    assert choose_cas([], ["a.test"], T0) == planner.CaPlan((), None)


def test_a_ca_is_paused_after_repeated_failures_longer_each_time() -> None:
    assert planner.ca_failure_pause(2, 3, planner.MINUTE) is None
    assert planner.ca_failure_pause(3, 3, planner.MINUTE) == planner.MINUTE
    assert planner.ca_failure_pause(5, 3, planner.MINUTE) == 4 * planner.MINUTE
    assert planner.ca_failure_pause(40, 3, planner.MINUTE) == 6 * planner.HOUR

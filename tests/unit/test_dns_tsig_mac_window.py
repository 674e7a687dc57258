"""RFC 8945 §5.2.3's replay check in one process: exact replays are refused while their
time window lasts, requests are not ordered by their Time Signed, a MAC is forgotten
once its window has passed, and a key holds a bounded number of them."""

from __future__ import annotations

import dns.name

from acmekit.dns import tsig
from acmekit.dns.tsig import TimesSigned

KEY = dns.name.from_text("upd")
NOW = 1_000_000


def _at(now: list[float]) -> TimesSigned:
    return TimesSigned(clock=lambda: now[0])


def test_a_fast_clock_does_not_shut_out_an_earlier_signed_request() -> None:
    macs = _at([NOW])
    assert macs.accept(KEY, NOW + 120, 300, b"fast")
    assert macs.accept(KEY, NOW, 300, b"on-time")
    assert macs.accept(KEY, NOW + 1, 300, b"next-second")
    assert macs.accept(KEY, NOW, 300, b"same-second-as-on-time")
    assert not macs.accept(KEY, NOW + 120, 300, b"fast")


def test_a_mac_is_forgotten_after_its_window_and_a_key_holds_a_bounded_number() -> None:
    now = [float(NOW)]
    macs = _at(now)
    for i in range(tsig.MAX_MACS_PER_KEY):
        assert macs.accept(KEY, NOW, 300, i.to_bytes(4, "big"))
    assert not macs.accept(KEY, NOW, 300, b"one-too-many")
    assert macs.accept(dns.name.from_text("other"), NOW, 300, b"one-too-many")
    now[0] += 301  # every window has passed: the time check refuses those now
    assert macs.accept(KEY, NOW + 301, 300, b"one-too-many")
    assert macs.accept(KEY, NOW + 301, 300, (0).to_bytes(4, "big"))


def test_a_wide_fudge_does_not_keep_a_mac_past_our_own() -> None:
    now = [float(NOW)]
    macs = _at(now)
    assert macs.accept(KEY, NOW, 65535, b"wide")
    assert not macs.accept(KEY, NOW, 65535, b"wide")
    now[0] += tsig.MAX_FUDGE + 1  # the time check refuses it now, whatever its fudge
    for i in range(tsig.MAX_MACS_PER_KEY - 1):
        assert macs.accept(KEY, NOW + 301, 300, i.to_bytes(4, "big"))
    assert macs.accept(KEY, NOW + 301, 300, b"room-left")  # "wide" no longer held


def test_the_time_check_honours_at_most_our_fudge() -> None:
    assert tsig.outside_window(NOW - 1000, 65535, NOW)
    assert tsig.outside_window(NOW + 301, 65535, NOW)
    assert not tsig.outside_window(NOW - 300, 65535, NOW)
    assert tsig.outside_window(NOW - 100, 60, NOW)  # a narrower fudge of its own holds


def test_a_mac_is_not_forgotten_while_a_time_check_just_before_passed() -> None:
    """The server checks the window, then records the MAC; if the second turns between
    the two, the MAC signed at the window's very edge was forgotten as past it and its
    replay taken. The record refuses what is outside the window at its own now."""
    now = [float(NOW)]
    macs = _at(now)
    assert macs.accept(KEY, NOW - tsig.MAX_FUDGE, 65535, b"edge")  # the window's last second
    now[0] += 1  # a replay, its time check passed in that second, recorded in the next
    assert not macs.accept(KEY, NOW - tsig.MAX_FUDGE, 65535, b"edge")
    assert not macs.accept(KEY, NOW - tsig.MAX_FUDGE, 65535, b"new-but-too-old")

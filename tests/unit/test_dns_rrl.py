"""Response rate limiting (BIND's RRL) on an injected clock, and the slipped answer."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rdatatype
import pytest

from acmekit.dns.handler import slipped
from acmekit.dns.rrl import ResponseRateLimiter, RrlSettings, Verdict


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def limiter(**settings: object) -> tuple[ResponseRateLimiter, Clock]:
    clock = Clock()
    return ResponseRateLimiter(RrlSettings(**settings), clock), clock  # type: ignore[arg-type]


def verdicts(rrl: ResponseRateLimiter, address: str, n: int) -> list[Verdict]:
    return [rrl.verdict(address) for _ in range(n)]


def test_a_burst_of_rate_is_sent_then_every_second_one_slips() -> None:
    rrl, _ = limiter(rate=5, slip=2)
    assert verdicts(rrl, "192.0.2.1", 5) == [Verdict.SEND] * 5
    assert verdicts(rrl, "192.0.2.1", 4) == [Verdict.DROP, Verdict.SLIP] * 2


@pytest.mark.parametrize(("slip", "expected"), [(0, Verdict.DROP), (1, Verdict.SLIP)])
def test_slip_zero_never_answers_and_one_always_slips(slip: int, expected: Verdict) -> None:
    rrl, _ = limiter(rate=1, slip=slip)
    assert rrl.verdict("192.0.2.1") == Verdict.SEND
    assert verdicts(rrl, "192.0.2.1", 4) == [expected] * 4


def test_the_bucket_refills_at_the_rate() -> None:
    rrl, clock = limiter(rate=10, slip=0)
    verdicts(rrl, "192.0.2.1", 10)
    assert rrl.verdict("192.0.2.1") == Verdict.DROP
    clock.t += 0.25  # two and a half responses' worth
    assert verdicts(rrl, "192.0.2.1", 3) == [Verdict.SEND, Verdict.SEND, Verdict.DROP]
    clock.t += 60  # a long pause refills to the rate, no more
    assert verdicts(rrl, "192.0.2.1", 11).count(Verdict.SEND) == 10


@pytest.mark.parametrize(
    ("first", "same", "other"),
    [
        ("192.0.2.1", "192.0.2.254", "192.0.3.1"),  # IPv4 /24
        ("2001:db8:0:ff::1", "2001:db8:0:ff:ffff::9", "2001:db8:0:100::1"),  # IPv6 /56
        ("::ffff:192.0.2.1", "::ffff:192.0.2.254", "::ffff:198.51.100.1"),  # dual-stack IPv4
    ],
)
def test_one_bucket_per_client_network(first: str, same: str, other: str) -> None:
    rrl, _ = limiter(rate=2, slip=0)
    verdicts(rrl, first, 2)
    assert rrl.verdict(same) == Verdict.DROP
    assert rrl.verdict(other) == Verdict.SEND


def test_loopback_is_exempt_unless_told_otherwise() -> None:
    rrl, _ = limiter(rate=1)
    assert verdicts(rrl, "127.0.0.1", 50) == [Verdict.SEND] * 50
    assert verdicts(rrl, "::1", 50) == [Verdict.SEND] * 50
    assert verdicts(rrl, "::ffff:127.0.0.1", 50) == [Verdict.SEND] * 50
    strict, _ = limiter(rate=1, slip=0, exempt_loopback=False)
    assert verdicts(strict, "127.0.0.1", 2) == [Verdict.SEND, Verdict.DROP]


def test_rate_zero_is_off() -> None:
    rrl, _ = limiter(rate=0)
    assert verdicts(rrl, "192.0.2.1", 1000) == [Verdict.SEND] * 1000


def test_buckets_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("acmekit.dns.rrl.MAX_NETWORKS", 10)
    rrl, clock = limiter(rate=1, slip=0)
    for i in range(10):
        rrl.verdict(f"10.0.{i}.1")
    assert len(rrl) == 10
    clock.t += 2
    rrl.verdict("10.1.0.1")  # the idle buckets are forgotten to make room
    assert len(rrl) == 1


def test_slipped_answer_is_the_question_with_tc() -> None:
    query = dns.message.make_query("_acme-challenge.x.test.", "TXT", use_edns=0)
    answer = dns.message.from_wire(slipped(query.to_wire()) or b"")
    assert answer.id == query.id
    assert answer.flags & dns.flags.QR and answer.flags & dns.flags.TC
    assert answer.flags & dns.flags.RD
    assert [q.name.to_text() for q in answer.question] == ["_acme-challenge.x.test."]
    assert answer.question[0].rdtype == dns.rdatatype.TXT
    assert not answer.answer and not answer.authority and not answer.additional


@pytest.mark.parametrize("wire", [b"", b"\x00" * 11, b"\x00\x01\x80" + bytes(9), b"\x00" * 12])
def test_nothing_slips_for_what_is_not_a_query(wire: bytes) -> None:
    assert slipped(wire) is None

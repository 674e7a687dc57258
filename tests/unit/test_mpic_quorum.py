"""The BR §3.2.2.9 quorum rule, checked exhaustively for 2 to 7 remotes."""

from __future__ import annotations

import itertools

import pytest

from acmekit.server.mpic.quorum import (
    Remote,
    Rir,
    Verdict,
    allowed_failures,
    check_remotes,
    decide,
    meets,
    quorum_text,
)


def remotes_of(rirs: tuple[Rir, ...]) -> list[Remote]:
    return [Remote(f"p{i}", rir) for i, rir in enumerate(rirs)]


def rule(remotes: list[Remote], passed: set[str]) -> bool:
    """The table as the BR writes it, independently of the module's arithmetic."""
    n = len(remotes)
    may_fail = {2: 1, 3: 1, 4: 1, 5: 1}.get(n, 2)
    rirs = {r.rir for r in remotes if r.name in passed}
    return n - len(passed) <= may_fail and len(rirs) >= 2


# Every assignment of RIRs up to relabelling is covered by three of them.
RIR_CHOICES = (Rir.ARIN, Rir.RIPE, Rir.APNIC)


@pytest.mark.parametrize("n", range(2, 8))
def test_complete_answers_follow_the_table(n: int) -> None:
    for rirs in itertools.product(RIR_CHOICES, repeat=n):
        remotes = remotes_of(rirs)
        for outcome in itertools.product((True, False), repeat=n):
            answers = {r.name: ok for r, ok in zip(remotes, outcome, strict=True)}
            passed = {name for name, ok in answers.items() if ok}
            expected = Verdict.PASS if rule(remotes, passed) else Verdict.FAIL
            assert decide(remotes, answers) == expected
            assert meets(remotes, passed) == (expected == Verdict.PASS)


@pytest.mark.parametrize("n", range(2, 7))
def test_an_early_verdict_is_the_final_one(n: int) -> None:
    """Answers arriving in any order: once decided, the verdict is that of all answers."""
    for rirs in itertools.product(RIR_CHOICES, repeat=n):
        remotes = remotes_of(rirs)
        for outcome in itertools.product((True, False), repeat=n):
            final = decide(remotes, {r.name: ok for r, ok in zip(remotes, outcome, strict=True)})
            for order in itertools.permutations(range(n)) if n <= 4 else [range(n)]:
                answers: dict[str, bool] = {}
                first = Verdict.PENDING
                for i in order:
                    answers[remotes[i].name] = outcome[i]
                    first = decide(remotes, answers)
                    if first != Verdict.PENDING:
                        break
                assert first == final


def test_allowed_failures_table() -> None:
    assert [allowed_failures(n) for n in range(2, 10)] == [1, 1, 1, 1, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="at least 2"):
        allowed_failures(1)


def test_four_remotes_one_down_passes_two_down_fails() -> None:
    remotes = remotes_of((Rir.ARIN, Rir.RIPE, Rir.APNIC, Rir.LACNIC))
    assert decide(remotes, {"p0": True, "p1": True, "p2": True}) == Verdict.PASS
    assert decide(remotes, {"p0": False, "p1": False}) == Verdict.FAIL
    assert decide(remotes, {"p0": True, "p1": True}) == Verdict.PENDING
    assert decide(remotes, {"p0": False}) == Verdict.PENDING


def test_corroboration_from_one_rir_is_not_enough() -> None:
    remotes = remotes_of((Rir.ARIN, Rir.ARIN, Rir.ARIN, Rir.RIPE))
    # Three ARIN perspectives agree, the only RIPE one does not: one RIR, so no quorum.
    assert decide(remotes, {"p0": True, "p1": True, "p2": True, "p3": False}) == Verdict.FAIL
    assert decide(remotes, {"p0": True, "p1": True, "p2": True}) == Verdict.PENDING
    assert decide(remotes, {"p3": False}) == Verdict.FAIL


def test_check_remotes() -> None:
    check_remotes(remotes_of((Rir.ARIN, Rir.RIPE)))
    with pytest.raises(ValueError, match="at least 2 remote"):
        check_remotes(remotes_of((Rir.ARIN,)))
    with pytest.raises(ValueError, match="RIRs"):
        check_remotes(remotes_of((Rir.ARIN, Rir.ARIN, Rir.ARIN)))
    with pytest.raises(ValueError, match="unique"):
        check_remotes([Remote("a", Rir.ARIN), Remote("a", Rir.RIPE)])


def test_quorum_text() -> None:
    assert quorum_text(4, 3) == "3/4"

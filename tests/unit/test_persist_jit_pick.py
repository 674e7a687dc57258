"""Which authorizations of a new order get a just-in-time dns-persist-01 lookup
(draft-ietf-acme-dns-persist-02 §4.4): pending and untouched ones offering the challenge,
for accounts that met it before, at most once per identifier per JIT_INTERVAL whoever
asks, and none when the bound is 0."""

from __future__ import annotations

from datetime import UTC, datetime

from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
)
from acmekit.server.records import AuthorizationRecord, ChallengeRecord
from acmekit.server.standing import JIT_INTERVAL, StandingCheck

PENDING = AuthorizationStatus.PENDING


def _authz(name: str, *, wildcard: bool = False, started: bool = False) -> AuthorizationRecord:
    kinds = (ChallengeType.DNS_01, ChallengeType.DNS_PERSIST_01)
    return AuthorizationRecord(
        id=f"a-{name}-{wildcard}",
        account_id="acct",
        identifier=Identifier(IdentifierType.DNS, name),
        wildcard=wildcard,
        stored_status=PENDING,
        expires=datetime(2030, 1, 1, tzinfo=UTC),
        challenges=tuple(
            ChallengeRecord(
                id=f"c{i}",
                authz_id="a",
                type=k,
                token="t",
                status=ChallengeStatus.PROCESSING
                if started and i == 0
                else ChallengeStatus.PENDING,
            )
            for i, k in enumerate(kinds)
        ),
    )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_only_untouched_pending_authorizations_of_known_accounts() -> None:
    check = StandingCheck(2.0, Clock())
    fresh, started, valid = _authz("a.test"), _authz("b.test", started=True), _authz("c.test")
    given = [(fresh, PENDING), (started, PENDING), (valid, AuthorizationStatus.VALID)]
    assert check.pick("newcomer", given, lambda: False) == []
    picked = check.pick("known", given, lambda: True)
    assert [c.authz.id for c in picked] == [fresh.id]
    assert picked[0].challenge.type == ChallengeType.DNS_PERSIST_01


def test_one_lookup_per_identifier_per_interval_whoever_asks() -> None:
    clock = Clock()
    check = StandingCheck(2.0, clock)
    name, wild = _authz("x.test"), _authz("x.test", wildcard=True)
    assert len(check.pick("one", [(name, PENDING), (wild, PENDING)], lambda: True)) == 2
    assert check.pick("two", [(_authz("X.test"), PENDING)], lambda: True) == []
    clock.t += JIT_INTERVAL
    assert len(check.pick("two", [(name, PENDING)], lambda: True)) == 1


def test_a_known_account_is_asked_of_the_store_once() -> None:
    check = StandingCheck(2.0, Clock())
    asked: list[int] = []

    def validated() -> bool:
        asked.append(1)
        return True

    check.pick("acct", [(_authz("p.test"), PENDING)], validated)
    check.pick("acct", [(_authz("q.test"), PENDING)], validated)
    assert len(asked) == 1


def test_an_account_that_never_passed_is_asked_again_only_after_the_interval() -> None:
    clock = Clock()
    check = StandingCheck(2.0, clock)
    asked: list[bool] = []
    answer = False

    def validated() -> bool:
        asked.append(answer)
        return answer

    for name in ("r.test", "s.test", "t.test"):  # three new-orders in the interval
        assert check.pick("acct", [(_authz(name), PENDING)], validated) == []
    assert asked == [False]
    clock.t += JIT_INTERVAL
    answer = True  # it has passed dns-persist-01 since
    assert len(check.pick("acct", [(_authz("u.test"), PENDING)], validated)) == 1
    assert asked == [False, True]


def test_a_challenge_passed_here_makes_the_account_known_at_once() -> None:
    check = StandingCheck(2.0, Clock())
    assert check.pick("acct", [(_authz("v.test"), PENDING)], lambda: False) == []
    check.passed("acct")  # within the interval: the store is not asked again
    assert len(check.pick("acct", [(_authz("w.test"), PENDING)], lambda: False)) == 1


def test_off_when_the_bound_is_zero() -> None:
    check = StandingCheck(0.0, Clock())
    assert not check.enabled
    assert check.pick("acct", [(_authz("z.test"), PENDING)], lambda: True) == []

"""The just-in-time dns-persist-01 bounds that keep new-order from being an amplifier:
at most JIT_PER_ORDER lookups per new-order, JIT_PER_DOMAIN per registered domain in
each JIT_INTERVAL whoever asks, the domain's allowance back after the interval."""

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
from acmekit.server.standing import JIT_INTERVAL, JIT_PER_DOMAIN, JIT_PER_ORDER, StandingCheck

PENDING = AuthorizationStatus.PENDING


def _authz(name: str) -> tuple[AuthorizationRecord, AuthorizationStatus]:
    record = AuthorizationRecord(
        id=f"a-{name}",
        account_id="acct",
        identifier=Identifier(IdentifierType.DNS, name),
        wildcard=False,
        stored_status=PENDING,
        expires=datetime(2030, 1, 1, tzinfo=UTC),
        challenges=(
            ChallengeRecord(
                id=f"c-{name}",
                authz_id=f"a-{name}",
                type=ChallengeType.DNS_PERSIST_01,
                token="t",
                status=ChallengeStatus.PENDING,
            ),
        ),
    )
    return record, PENDING


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_order_of_many_domains_is_cut_at_its_bound() -> None:
    check = StandingCheck(2.0, Clock())
    given = [_authz(f"site{i}.example.com") for i in range(3 * JIT_PER_ORDER)]
    picked = check.pick("acct", given, lambda: True)
    # The first ones, in the order's order; the others stay pending for the client.
    assert [c.authz.id for c in picked] == [a.id for a, _ in given[:JIT_PER_ORDER]]


def test_a_domains_allowance_is_shared_and_comes_back() -> None:
    clock = Clock()
    check = StandingCheck(2.0, clock)
    first = [_authz(f"a{i}.victim.co.uk") for i in range(JIT_PER_DOMAIN)]
    assert len(check.pick("one", first, lambda: True)) == JIT_PER_DOMAIN
    # Another account, other names of the same registered domain: nothing left.
    second = [_authz(f"b{i}.victim.co.uk") for i in range(3)]
    assert check.pick("two", second, lambda: True) == []
    # Another registered domain under the same public suffix has its own.
    assert len(check.pick("two", [_authz("www.other.co.uk")], lambda: True)) == 1
    clock.t += JIT_INTERVAL
    assert len(check.pick("two", second, lambda: True)) == len(second)

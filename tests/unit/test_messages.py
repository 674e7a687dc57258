"""Identifiers and the derived statuses of RFC 8555 §7.1.6, tested exhaustively."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from acmekit.protocol.messages import (
    AuthorizationStatus as A,
)
from acmekit.protocol.messages import (
    ChallengeStatus as C,
)
from acmekit.protocol.messages import (
    Identifier,
    IdentifierType,
    authorization_status,
    order_status,
    parse_identifier,
    parse_identifiers,
)
from acmekit.protocol.messages import (
    OrderStatus as O,
)
from acmekit.protocol.problems import AcmeError, ProblemType

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(days=1)
EARLIER = NOW - timedelta(seconds=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Example.COM", "example.com"),
        ("*.example.com", "*.example.com"),
        ("a-b.c.example", "a-b.c.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_good_dns_names(value: str, expected: str) -> None:
    assert parse_identifier({"type": "dns", "value": value}).value == expected


@pytest.mark.parametrize(
    "value",
    [
        "example.com.",
        "a..example.com",
        "",
        "*.*.example.com",
        "a.*.example.com",
        "foo*.example.com",
        "*",
        "-a.example.com",
        "a_b.example.com",
        "localhost",
        "127.0.0.1",
        "::1",
        "x" * 64 + ".example.com",
        "bücher.example",
        "1.2.3.4.5",
    ],
)
def test_bad_dns_names_are_rejected(value: str) -> None:
    with pytest.raises(AcmeError) as err:
        parse_identifier({"type": "dns", "value": value})
    assert err.value.problem.type == ProblemType.REJECTED_IDENTIFIER


def test_ip_identifiers_are_normalised() -> None:
    assert parse_identifier({"type": "ip", "value": "2001:db8:0::1"}).value == "2001:db8::1"
    with pytest.raises(AcmeError) as err:
        parse_identifier({"type": "ip", "value": "example.com"})
    assert err.value.problem.type == ProblemType.MALFORMED


def test_unknown_identifier_type() -> None:
    with pytest.raises(AcmeError) as err:
        parse_identifier({"type": "email", "value": "a@b.c"})
    assert err.value.problem.type == ProblemType.UNSUPPORTED_IDENTIFIER


def test_identifiers_are_deduplicated_and_sorted() -> None:
    got = parse_identifiers(
        [
            {"type": "dns", "value": "b.example"},
            {"type": "dns", "value": "B.example"},
            {"type": "dns", "value": "a.example"},
        ]
    )
    assert [i.value for i in got] == ["a.example", "b.example"]
    assert Identifier(IdentifierType.DNS, "*.x.example").base_name == "x.example"
    with pytest.raises(AcmeError):
        parse_identifiers([])


@pytest.mark.parametrize(
    ("stored", "challenges", "expires", "expected"),
    [
        (A.PENDING, [C.PENDING, C.PENDING], LATER, A.PENDING),
        (A.PENDING, [C.PENDING, C.PROCESSING], LATER, A.PENDING),
        (A.PENDING, [C.PENDING, C.VALID], LATER, A.VALID),
        (A.PENDING, [C.INVALID, C.PENDING], LATER, A.INVALID),
        (A.PENDING, [C.VALID], EARLIER, A.EXPIRED),
        (A.PENDING, [C.PENDING], EARLIER, A.EXPIRED),
        (A.PENDING, [C.INVALID], EARLIER, A.INVALID),
        (A.DEACTIVATED, [C.VALID], LATER, A.DEACTIVATED),
        (A.REVOKED, [C.VALID], LATER, A.REVOKED),
    ],
)
def test_authorization_status_table(
    stored: A, challenges: list[C], expires: datetime, expected: A
) -> None:
    assert authorization_status(stored, challenges, expires, NOW) == expected


def _order(
    authzs: tuple[A, ...],
    *,
    finalizing: bool = False,
    has_certificate: bool = False,
    failed: bool = False,
    expired: bool = False,
) -> O:
    return order_status(
        authzs,
        expires=EARLIER if expired else LATER,
        now=NOW,
        finalizing=finalizing,
        has_certificate=has_certificate,
        failed=failed,
    )


def test_order_status_exhaustive() -> None:
    """Every combination of two authorizations and the order's own facts."""
    for a, b in itertools.product(list(A), repeat=2):
        for fin, cert, failed in itertools.product([False, True], repeat=3):
            got = _order((a, b), finalizing=fin, has_certificate=cert, failed=failed)
            if cert:
                expected = O.VALID
            elif failed:
                expected = O.INVALID
            elif fin:
                expected = O.PROCESSING
            elif {a, b} - {A.VALID, A.PENDING}:
                expected = O.INVALID
            elif a == b == A.VALID:
                expected = O.READY
            else:
                expected = O.PENDING
            assert got == expected, (a, b, fin, cert, failed)


def test_expired_order_is_invalid_unless_done() -> None:
    assert _order((A.VALID,), expired=True) == O.INVALID
    assert _order((A.VALID,), expired=True, has_certificate=True) == O.VALID

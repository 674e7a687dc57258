"""The app's JSON texts of a challenge, an authorization and an order (render's `*_json`)
are `jsontext.dumps` of the documents as dicts, byte for byte.

The texts are written by hand (keys as literals, each string through json's string
encoder); the documents as dicts, below, are the definition. Compared over every
optional field (wildcard, validated, errors, dns-persist-01's issuer names, profile,
replaces, certificate, an order's error and its first failed challenge's), every
status, and strings with what json escapes: quotes, backslashes, control characters,
DEL, non-ASCII, astral characters; then over 3,000 random records (a fixed seed).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from acmekit.protocol import jsontext
from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
    OrderStatus,
)
from acmekit.server import render
from acmekit.server.authority import AuthzView, OrderView
from acmekit.server.records import AuthorizationRecord, ChallengeRecord, OrderRecord
from acmekit.server.render import Urls, rfc3339

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ODD = [
    "plain",
    'quo"te',
    "back\\slash",
    "tab\tnl\ncr\r",
    "nul\x00\x1f",
    "del\x7f",
    "ünï",
    "\u2028",
    "😀",
]
BASES = ["https://ca.example", "https://127.0.0.1:14000", 'https://ho"st', "https://hö.st:1"]
ISSUERS = [(), ("ca.example",), ("a.example", 'b"example', "ünï.example")]
ERRORS: list[dict[str, Any] | None] = [
    None,
    {"type": "urn:ietf:params:acme:error:connection", "detail": "refused", "status": 400},
    {"type": "urn:ietf:params:acme:error:dns", "detail": ODD[1] + ODD[6] + ODD[8]},
    {"type": "x", "subproblems": [{"type": "y", "identifier": {"type": "dns", "value": "a"}}]},
    {"detail": "\x7f\x00", "n": 1.5, "t": True, "f": False, "z": None, "l": []},
]


def _challenge(rng: random.Random, n: int, authz_id: str) -> ChallengeRecord:
    ctype = rng.choice(list(ChallengeType))
    return ChallengeRecord(
        f"ch{n}-{rng.choice(ODD)}",
        authz_id,
        ctype,
        rng.choice(ODD) + "tok",
        rng.choice(list(ChallengeStatus)),
        rng.choice([None, NOW, NOW + timedelta(seconds=rng.randrange(10**8))]),
        rng.choice(ERRORS),
    )


def _identifier(rng: random.Random) -> Identifier:
    kind = rng.choice(list(IdentifierType))
    return Identifier(kind, rng.choice(["a.example", "*.b.example", "192.0.2.1", rng.choice(ODD)]))


def _authz_view(rng: random.Random, n: int) -> AuthzView:
    authz_id = f"az{n}" + rng.choice(["", ODD[1], ODD[6]])
    chs = tuple(_challenge(rng, i, authz_id) for i in range(rng.randrange(5)))
    rec = AuthorizationRecord(
        authz_id,
        "acct",
        _identifier(rng),
        rng.random() < 0.5,
        rng.choice(list(AuthorizationStatus)),
        NOW + timedelta(seconds=rng.randrange(-(10**6), 10**8)),
        chs,
    )
    return AuthzView(rec, rng.choice(list(AuthorizationStatus)))


def _order_view(rng: random.Random, n: int) -> OrderView:
    authzs = tuple(_authz_view(rng, i) for i in range(rng.randrange(4)))
    idents = tuple(_identifier(rng) for _ in range(rng.randrange(4)))
    rec = OrderRecord(
        f"ord{n}" + rng.choice(["", ODD[1]]),
        "acct",
        idents,
        tuple(a.record.id for a in authzs)
        + tuple(rng.choice(ODD) for _ in range(rng.randrange(2))),
        NOW + timedelta(seconds=rng.randrange(10**8)),
        NOW,
        profile=rng.choice([None, "", "classic", ODD[1], ODD[8]]),
        replaces=rng.choice([None, "", "aki.serial", ODD[2]]),
        error=rng.choice(ERRORS),
        certificate_id=rng.choice([None, "", "cert1", ODD[6]]),
    )
    return OrderView(rec, rng.choice(list(OrderStatus)), authzs)


# The documents as dicts (RFC 8555 §7.1.3-§7.1.5), as the CA rendered them before its
# texts were written by hand: the definition the texts are compared against.


def challenge_doc(urls: Urls, ch: ChallengeRecord, issuers: Sequence[str] = ()) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": str(ch.type),
        "url": urls.challenge(ch.id),
        "status": str(ch.status),
    }
    if ch.type == ChallengeType.DNS_PERSIST_01:
        # draft-ietf-acme-dns-persist-02 §3.1: no token; the names a record may give.
        doc["issuerDomainNames"] = list(issuers)
    else:
        doc["token"] = ch.token
    if ch.validated is not None:
        doc["validated"] = rfc3339(ch.validated)
    if ch.error is not None:
        doc["error"] = ch.error
    return doc


def authorization_doc(urls: Urls, view: AuthzView, issuers: Sequence[str] = ()) -> dict[str, Any]:
    rec = view.record
    doc: dict[str, Any] = {
        "identifier": rec.identifier.to_json(),
        "status": str(view.status),
        "expires": rfc3339(rec.expires),
        "challenges": [challenge_doc(urls, ch, issuers) for ch in rec.challenges],
    }
    if rec.wildcard:
        doc["wildcard"] = True
    return doc


def order_doc(urls: Urls, view: OrderView) -> dict[str, Any]:
    rec = view.record
    doc: dict[str, Any] = {
        "status": str(view.status),
        "expires": rfc3339(rec.expires),
        "identifiers": [i.to_json() for i in rec.identifiers],
        "authorizations": [urls.authz(a) for a in rec.authz_ids],
        "finalize": urls.finalize(rec.id),
    }
    if rec.profile:
        doc["profile"] = rec.profile
    if rec.replaces:
        doc["replaces"] = rec.replaces
    if view.status == OrderStatus.VALID and rec.certificate_id:
        doc["certificate"] = urls.certificate(rec.certificate_id)
    if view.error is not None:
        doc["error"] = view.error
    return doc


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("issuers", ISSUERS, ids=["none", "one", "odd"])
def test_every_challenge_field_is_written_as_dumps_writes_it(
    base: str, issuers: tuple[str, ...]
) -> None:
    urls = Urls(base)
    for ctype in ChallengeType:
        for status in ChallengeStatus:
            for validated in (None, NOW):
                for error in ERRORS:
                    for token in ODD:
                        ch = ChallengeRecord(
                            "c" + token, "a", ctype, token, status, validated, error
                        )
                        expected = jsontext.dumps(challenge_doc(urls, ch, issuers))
                        assert render.challenge_json(urls, ch, issuers) == expected


def test_authorizations_and_orders_are_written_as_dumps_writes_them() -> None:
    rng = random.Random(8555)
    for n in range(3000):
        urls = Urls(rng.choice(BASES))
        issuers = rng.choice(ISSUERS)
        view = _authz_view(rng, n)
        expected = jsontext.dumps(authorization_doc(urls, view, issuers))
        assert render.authorization_json(urls, view, issuers) == expected
        order = _order_view(rng, n)
        assert render.order_json(urls, order) == jsontext.dumps(order_doc(urls, order))


def test_an_invalid_orders_error_is_its_first_failed_challenges() -> None:
    rng = random.Random(1)
    urls = Urls(BASES[0])
    failed = _authz_view(rng, 0)
    ch = ChallengeRecord("c", failed.record.id, ChallengeType.HTTP_01, "t", ChallengeStatus.INVALID)
    ch = ChallengeRecord(**{**ch.__dict__, "error": ERRORS[2]})
    authz = AuthzView(
        AuthorizationRecord(**{**failed.record.__dict__, "challenges": (ch,)}),
        AuthorizationStatus.INVALID,
    )
    rec = OrderRecord("o", "acct", (), (authz.record.id,), NOW, NOW)
    view = OrderView(rec, OrderStatus.INVALID, (authz,))
    assert view.error == ERRORS[2]
    text = render.order_json(urls, view)
    assert text == jsontext.dumps(order_doc(urls, view))
    assert jsontext.loads(text)["error"] == ERRORS[2]


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (NOW, "2026-01-02T03:04:05Z"),  # the microseconds dropped, not rounded
        (datetime(1, 1, 1), "0001-01-01T00:00:00Z"),
        (datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "0999-12-31T23:59:59Z"),
        (datetime(1000, 10, 10, 10, 10, 10), "1000-10-10T10:10:10Z"),
        (datetime.max.replace(tzinfo=UTC), "9999-12-31T23:59:59Z"),
    ],
    ids=["microseconds", "year-1", "year-999", "year-1000", "max"],
)
def test_rfc3339_writes_four_digits_of_year_and_two_of_each_field(t: datetime, text: str) -> None:
    """RFC 3339 §5.6: `date-fullyear` is four digits, the other fields two."""
    assert rfc3339(t) == text


def test_rfc3339_is_isoformat_to_the_second() -> None:
    """What `isoformat` writes to the second, over random times of every year."""
    rng = random.Random(3339)
    for _ in range(20_000):
        t = datetime.min + timedelta(seconds=rng.randrange(315_537_897_600), microseconds=7)
        assert rfc3339(t) == t.isoformat(timespec="seconds") + "Z", t

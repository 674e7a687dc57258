"""Parsing what a server sends, choosing challenges and chains, naming failures."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.client import (
    Authorization,
    Challenge,
    ExternalAccountBinding,
    Order,
    as_identifier,
    choose_challenge,
    describe_failures,
    select_chain,
)
from acmekit.client.client import _raise_failed, order_failure
from acmekit.client.errors import NoUsableChallenge, OrderNotValid, ServerProtocolError
from acmekit.client.solvers import Closer, Solver, Waiter, close_solvers
from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
    OrderStatus,
)
from acmekit.protocol.problems import AcmeError, ProblemType


def _authz(*types: str, status: str = "pending", error: dict[str, Any] | None = None) -> Any:
    return {
        "identifier": {"type": "dns", "value": "a.test"},
        "status": status,
        "expires": "2025-01-09T00:00:00Z",
        "challenges": [
            {"type": t, "url": f"https://ca.test/chall/{t}", "status": status, "token": "tok"}
            | ({"error": error} if error else {})
            for t in types
        ],
    }


class NullSolver:
    async def present(self, identifier: Identifier, challenge: Challenge, key_auth: str) -> None:
        return None

    async def cleanup(self, identifier: Identifier, challenge: Challenge, key_auth: str) -> None:
        return None


class ClosingSolver(NullSolver):
    def __init__(self) -> None:
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


async def test_optional_capabilities_are_found_by_type() -> None:
    closing, plain = ClosingSolver(), NullSolver()
    assert isinstance(closing, Closer) and not isinstance(plain, Closer)
    assert not isinstance(plain, Waiter)
    await close_solvers([closing, plain, closing])  # one solver for two types: once
    assert closing.closed == 1


def test_unknown_challenge_types_are_kept_raw() -> None:
    authz = Authorization.from_json("https://ca.test/authz/1", _authz("http-01", "onion-01"))
    assert authz.status == AuthorizationStatus.PENDING
    assert authz.expires == datetime.datetime(2025, 1, 9, tzinfo=datetime.UTC)
    onion = authz.challenges[1]
    assert onion.known_type is None
    assert onion.raw["type"] == "onion-01"
    assert authz.challenges[0].known_type == ChallengeType.HTTP_01


def test_a_malformed_answer_is_our_finding_not_an_acme_error() -> None:
    doc = _authz("http-01")
    doc["status"] = "sleeping"
    with pytest.raises(ServerProtocolError, match="unknown status 'sleeping'"):
        Authorization.from_json("https://ca.test/authz/1", doc)


def test_order_parsing() -> None:
    order = Order.from_json(
        "https://ca.test/order/1",
        {
            "status": "invalid",
            "identifiers": [{"type": "dns", "value": "a.test"}, {"type": "ip", "value": "::1"}],
            "authorizations": ["https://ca.test/authz/1"],
            "finalize": "https://ca.test/order/1/finalize",
            "error": {"type": str(ProblemType.UNAUTHORIZED), "detail": "no"},
        },
    )
    assert order.status == OrderStatus.INVALID
    assert order.identifiers[1] == Identifier(IdentifierType.IP, "::1")
    assert order.error is not None and order.error.type == ProblemType.UNAUTHORIZED
    # The server's error is the CA's verdict; an order that ends without one is our finding.
    assert isinstance(order_failure(order), AcmeError)
    silent = replace(order, error=None)
    assert isinstance(order_failure(silent), OrderNotValid)


def test_choose_challenge_follows_preference_among_what_both_sides_support() -> None:
    authz = Authorization.from_json("u", _authz("http-01", "dns-01", "tls-alpn-01"))
    solver: Solver = NullSolver()
    both = {ChallengeType.HTTP_01: solver, ChallengeType.DNS_01: solver}
    prefer_dns = (ChallengeType.DNS_01, ChallengeType.HTTP_01)
    assert choose_challenge(authz, both, prefer_dns).type == "dns-01"
    assert choose_challenge(authz, both, tuple(both)).type == "http-01"
    only_dns = Authorization.from_json("u", _authz("dns-01"))
    with pytest.raises(NoUsableChallenge) as err:
        choose_challenge(only_dns, {ChallengeType.HTTP_01: solver}, (ChallengeType.HTTP_01,))
    assert err.value.identifier == "a.test"


def test_failures_name_each_identifier() -> None:
    bad = {"type": str(ProblemType.CONNECTION), "detail": "refused"}
    one = Authorization.from_json("u1", _authz("http-01", status="invalid", error=bad))
    two_doc = _authz("dns-01", status="invalid")
    two_doc["identifier"]["value"] = "b.test"
    two = Authorization.from_json("u2", two_doc)
    with pytest.raises(AcmeError) as err:
        _raise_failed([one, two])
    assert err.value.problem.type == ProblemType.COMPOUND
    assert describe_failures(err.value) == [
        "a.test: connection: refused",
        "b.test: unauthorized: authorization is invalid",
    ]


def test_identifiers_from_strings_and_eab_keys() -> None:
    assert as_identifier("WWW.A.test") == Identifier(IdentifierType.DNS, "www.a.test")
    assert as_identifier("2001:db8::0001") == Identifier(IdentifierType.IP, "2001:db8::1")
    eab = ExternalAccountBinding.from_base64url("kid", "AAEC_w==")
    assert eab.hmac_key == b"\x00\x01\x02\xff"
    assert "AAEC" not in repr(eab) and "\\x00" not in repr(eab)


def _cert(cn: str, issuer_cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_select_chain_by_topmost_issuer() -> None:
    default = _cert("leaf", "Int A") + _cert("Int A", "Root A")
    alternate = _cert("leaf", "Int B") + _cert("Int B", "Root B")
    assert select_chain([default, alternate], "Root B") == alternate
    assert select_chain([default, alternate], "Int A") == default
    assert select_chain([default, alternate], "Nobody") == default

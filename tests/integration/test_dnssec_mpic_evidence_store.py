"""What the CA records with an authorization about how it was validated (MPIC quorum and
perspectives, whether the DNS answers were DNSSEC-authenticated), written with the
challenge's outcome and read back, on SQLite and on PostgreSQL (the booleans are native
there, integers in SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
)
from acmekit.server.records import AuthorizationRecord, ChallengeRecord, ValidationEvidence
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_store
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(params=BACKEND_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(request.param, tmp_path, "ca.db") as store:
        yield store


def pending(store: Store, authz_id: str) -> str:
    """A pending authorization with one http-01 challenge, started; the challenge's ID."""
    ch = ChallengeRecord(
        f"{authz_id}-ch", authz_id, ChallengeType.HTTP_01, "tok", ChallengeStatus.PENDING
    )
    ident = Identifier(IdentifierType.DNS, f"{authz_id}.example.com")
    authz = AuthorizationRecord(
        authz_id, "acct", ident, False, AuthorizationStatus.PENDING, NOW + timedelta(days=7), (ch,)
    )
    store.orders.add_authorization(authz)
    assert store.orders.start_challenge(ch.id, NOW, "https://ca.example/acct/1")
    return ch.id


def test_evidence_is_recorded_with_the_outcome(store: Store) -> None:
    perspectives = (
        {"name": "fra", "rir": "RIPE", "outcome": "passed"},
        {"name": "iad", "rir": "ARIN", "outcome": "passed"},
        {"name": "sin", "rir": "APNIC", "outcome": "cancelled"},
    )
    secure = ValidationEvidence("2/3", perspectives, dnssec_dcv=True, dnssec_caa=True)
    store.orders.finish_challenge(pending(store, "a"), NOW, None, NOW + timedelta(days=30), secure)
    unsigned = ValidationEvidence(dnssec_dcv=False, dnssec_caa=False)
    store.orders.finish_challenge(
        pending(store, "b"), NOW, None, NOW + timedelta(days=30), unsigned
    )
    assert store.orders.evidence("a") == secure
    assert store.orders.evidence("b") == unsigned
    a = store.orders.authorization("a")
    assert a is not None and a.expires == NOW + timedelta(days=30)
    assert a.challenges[0].status == ChallengeStatus.VALID


def test_a_failed_validation_keeps_its_evidence_and_its_expiry(store: Store) -> None:
    # The remotes refused: what they said is recorded although the challenge failed; the
    # CAA lookups failed, so nothing is known of their answers.
    refused = ValidationEvidence(
        "1/3",
        ({"name": "fra", "rir": "RIPE", "outcome": "failed", "detail": "validation: dns"},),
        dnssec_dcv=True,
    )
    error = {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "not corroborated"}
    store.orders.finish_challenge(
        pending(store, "c"), NOW, error, NOW + timedelta(days=30), refused
    )
    assert store.orders.evidence("c") == refused
    c = store.orders.authorization("c")
    assert c is not None and c.expires == NOW + timedelta(days=7)
    assert c.challenges[0].status == ChallengeStatus.INVALID


def test_nothing_recorded_reads_as_unknown(store: Store) -> None:
    store.orders.finish_challenge(pending(store, "d"), NOW, None, NOW + timedelta(days=30))
    assert store.orders.evidence("d") == ValidationEvidence()
    assert store.orders.evidence("no-such-authorization") is None

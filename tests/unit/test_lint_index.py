"""The lint's index of pkilint validators (lint._index) changes nothing but the work:
the same validators run on the same nodes, with the same findings, in the same order,
as pkilint's own walk over every validator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkilint import loader

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    Issuer,
    LeafShape,
    load_or_create_issuer,
    new_serial,
    subscriber_builder,
)
from acmekit.server.lint import _index, build_certificate_validator

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEFAULT_SHAPE = LeafShape()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return load_or_create_issuer(tmp_path_factory.mktemp("lint-index") / "state", NOW)


def certificate(
    issuer: Issuer,
    names: list[Identifier],
    lifetime: timedelta = timedelta(days=90),
    shape: LeafShape = DEFAULT_SHAPE,
    crl_url: str | None = "http://crl.example.com/crl/0.crl",
) -> bytes:
    builder = subscriber_builder(
        issuer,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        names,
        serial=new_serial(),
        not_before=NOW,
        not_after=NOW + lifetime,
        crl_url=crl_url,
        issuer_url="http://crl.example.com/issuer.der",
        shape=shape,
    )
    key = issuer.intermediate_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def outcome(container: Any, der: bytes) -> list[tuple[str, str, list[str]]]:
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
    return [
        (r.validator.name, str(r.node.path), [repr(d) for d in r.finding_descriptions])
        for r in container.validate(doc.root)
    ]


DNS = IdentifierType.DNS
CASES = {
    "default": {"names": [Identifier(DNS, "www.example.com")]},
    "many names": {"names": [Identifier(DNS, f"n{i}.example.com") for i in range(12)]},
    "400 days": {"names": [Identifier(DNS, "a.example.com")], "lifetime": timedelta(days=400)},
    "internal name": {"names": [Identifier(DNS, "host.corp"), Identifier(DNS, "localhost")]},
    "ip address": {"names": [Identifier(IdentifierType.IP, "10.0.0.1")]},
    "no crl": {"names": [Identifier(DNS, "b.example.com")], "crl_url": None},
    "tlsserver shape": {
        "names": [Identifier(DNS, "c.example.com")],
        "shape": LeafShape(common_name=False, subject_key_identifier=False, client_auth=False),
    },
}


def test_indexed_walk_gives_pkilints_results(issuer: Issuer) -> None:
    plain, _ = build_certificate_validator()
    indexed, _ = build_certificate_validator()
    _index(indexed, empty_results=True)
    assert "_validate_rec" in vars(indexed)  # the walk under test is ours
    findings = 0
    for case, kwargs in CASES.items():
        der = certificate(issuer, **kwargs)
        for _ in range(2):  # the second pass is served from the index
            expected = outcome(plain, der)
            assert outcome(indexed, der) == expected, case
        findings += sum(len(f) for _, _, f in expected)
    assert findings > 0  # the cases do raise findings, and those agree too

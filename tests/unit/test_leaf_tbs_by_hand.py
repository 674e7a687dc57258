"""The subscriber TBSCertificate encoded by hand (ca.subscriber_tbs, what the authority
signs with lint off and a file key) is the builder's (ca.subscriber_builder) to the byte,
over keys, names, profile shapes, dates and the optional extensions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    Issuer,
    LeafShape,
    load_or_create_issuer,
    sign_builder,
    sign_subscriber_tbs,
    subscriber_builder,
    subscriber_tbs,
)

NOW = datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
DNS, IP = IdentifierType.DNS, IdentifierType.IP

NAMES = {
    "one": [Identifier(DNS, "a.example.test")],
    "several": [Identifier(DNS, "b.example.test"), Identifier(DNS, "*.b.example.test")],
    "ip only": [Identifier(IP, "192.0.2.7"), Identifier(IP, "2001:db8::1")],
    "ip first": [Identifier(IP, "192.0.2.7"), Identifier(DNS, "c.example.test")],
    # a first DNS name over 64 octets: no CN (the subject is empty, the SAN critical)
    "long": [Identifier(DNS, "l" * 60 + ".example.test"), Identifier(DNS, "d.example.test")],
    "many": [Identifier(DNS, f"n{i}.example.test") for i in range(40)],
}
SHAPES = [LeafShape(*flags) for flags in itertools.product((True, False), repeat=3)]


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return load_or_create_issuer(tmp_path_factory.mktemp("ca") / "state", NOW)


@pytest.fixture(scope="module")
def keys() -> dict[str, CertificatePublicKeyTypes]:
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()).public_key(),
        "p384": ec.generate_private_key(ec.SECP384R1()).public_key(),
        "rsa": rsa.generate_private_key(65537, 2048).public_key(),
    }


def both(issuer: Issuer, key: CertificatePublicKeyTypes, **kw: object) -> tuple[bytes, bytes]:
    by_builder = sign_builder(subscriber_builder(issuer, key, **kw), issuer)  # type: ignore[arg-type]
    return subscriber_tbs(issuer, key, **kw), by_builder.tbs_certificate_bytes  # type: ignore[arg-type]


def test_every_shape_key_and_name_set_matches_the_builder(
    issuer: Issuer, keys: dict[str, CertificatePublicKeyTypes]
) -> None:
    serials = iter(range(1, 10_000))
    for (kind, key), idents, shape, urls in itertools.product(
        keys.items(), NAMES.values(), SHAPES, [(None, None), ("http://c/1.crl", "http://c/i")]
    ):
        serial = next(serials) * 0x1F3B5D7
        by_hand, by_builder = both(
            issuer,
            key,
            identifiers=idents,
            serial=serial,
            not_before=NOW - timedelta(hours=1),
            not_after=NOW + timedelta(days=90),
            crl_url=urls[0],
            issuer_url=urls[1],
            shape=shape,
        )
        assert by_hand == by_builder, (kind, idents, shape, urls)


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (datetime(1950, 1, 1, tzinfo=UTC), datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2050, 1, 1, tzinfo=UTC)),
        (datetime(2099, 5, 6, 7, 8, 9, 999999), datetime(9999, 12, 31, 23, 59, 59)),  # naive
        (
            datetime(2030, 6, 1, 2, 0, tzinfo=UTC).astimezone(),  # another zone
            datetime(2030, 6, 1, 2, 0, 59, 1, tzinfo=UTC),
        ),
    ],
)
def test_times_match_the_builder(
    issuer: Issuer,
    keys: dict[str, CertificatePublicKeyTypes],
    not_before: datetime,
    not_after: datetime,
) -> None:
    by_hand, by_builder = both(
        issuer,
        keys["p256"],
        identifiers=NAMES["one"],
        serial=(1 << 158) + 12345,
        not_before=not_before,
        not_after=not_after,
        crl_url=None,
    )
    assert by_hand == by_builder


def test_signed_certificate_is_the_tbs_and_verifies(
    issuer: Issuer, keys: dict[str, CertificatePublicKeyTypes]
) -> None:
    tbs = subscriber_tbs(
        issuer,
        keys["rsa"],
        NAMES["ip first"],
        serial=0x4ABCDEF,
        not_before=NOW,
        not_after=NOW + timedelta(days=7),
        crl_url="http://c/2.crl",
    )
    cert = sign_subscriber_tbs(tbs, issuer)
    assert cert.tbs_certificate_bytes == tbs
    cert.verify_directly_issued_by(issuer.intermediate_cert)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"identifiers": []}, "at least one identifier"),
        ({"serial": 0}, "positive"),
        ({"serial": 1 << 159}, "20 octets"),
        ({"not_after": NOW - timedelta(days=1)}, "ends before"),
        ({"not_before": datetime(1949, 12, 31, tzinfo=UTC)}, "1950"),
    ],
)
def test_refuses_what_the_builder_refuses(
    issuer: Issuer,
    keys: dict[str, CertificatePublicKeyTypes],
    change: dict[str, object],
    message: str,
) -> None:
    kw: dict[str, object] = {
        "identifiers": NAMES["one"],
        "serial": 5,
        "not_before": NOW,
        "not_after": NOW + timedelta(days=1),
        "crl_url": None,
        **change,
    }
    with pytest.raises(ValueError, match=message):
        subscriber_tbs(issuer, keys["p256"], **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        subscriber_builder(issuer, keys["p256"], **kw)  # type: ignore[arg-type]


def test_an_ed25519_key_encodes_alike(issuer: Issuer) -> None:
    """Not a subscriber key the CA accepts (keycheck refuses it first), but its SPKI and
    SKI come out of the same code: the two agree on it too."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    by_hand, by_builder = both(
        issuer,
        key,
        identifiers=NAMES["one"],
        serial=7,
        not_before=NOW,
        not_after=NOW + timedelta(days=1),
        crl_url=None,
    )
    assert by_hand == by_builder

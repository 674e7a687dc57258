"""RFC 9773 certificate IDs and renewal windows (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.protocol.problems import AcmeError
from acmekit.server.ari import (
    CertId,
    cert_id_of,
    moved_window,
    parse_cert_id,
    revoked_window,
    serial_bytes,
    suggested_window,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (0x7F, b"\x7f"),
        (0x80, b"\x00\x80"),  # top bit set: a leading zero keeps it positive
        (0xFF, b"\x00\xff"),
        (0x100, b"\x01\x00"),
        (0x87654321, b"\x00\x87\x65\x43\x21"),
    ],
)
def test_serial_bytes(serial: int, expected: bytes) -> None:
    assert serial_bytes(serial) == expected


def test_rfc9773_example() -> None:
    """The example of RFC 9773 §4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:
    01:C8:C8 and serial 00:87:65:43:21."""
    key_id = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8C8")
    cid = CertId(key_id, 0x87654321)
    assert str(cid) == "aYhba4dGQEHhs3uEe6CuLN4ByMg.AIdlQyE"
    assert parse_cert_id("aYhba4dGQEHhs3uEe6CuLN4ByMg.AIdlQyE") == cid


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nodot",
        ".AIdlQyE",
        "aYhba4dGQEHhs3uEe6CuLN4ByMg.",
        "aYhba4dGQEHhs3uEe6CuLN4ByMg.AIdlQyE=",  # padding
        "aYhba4dGQEHhs3uEe6CuLN4ByMg.gA",  # 0x80: negative
        "aYhba4dGQEHhs3uEe6CuLN4ByMg.AAE",  # 00 01: not minimal
        "a+b/.AQ",  # not base64url
    ],
)
def test_parse_cert_id_refuses(text: str) -> None:
    with pytest.raises(AcmeError) as err:
        parse_cert_id(text)
    assert err.value.problem.type.endswith(":malformed")


def test_cert_id_of_a_certificate() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    aki = x509.AuthorityKeyIdentifier(b"\x01\x02\x03", None, None)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(0xABCDEF)
        .not_valid_before(T0).not_valid_after(T0 + timedelta(days=1))
        .add_extension(aki, critical=False).sign(key, hashes.SHA256())
    )  # fmt: skip
    cid = cert_id_of(cert)
    assert cid == CertId(b"\x01\x02\x03", 0xABCDEF)
    assert parse_cert_id(str(cid)) == cid


def test_window_centred_on_two_thirds_of_90_days() -> None:
    w = suggested_window(T0, T0 + timedelta(days=90))
    assert w.start == T0 + timedelta(days=59)
    assert w.end == T0 + timedelta(days=61)


def test_window_of_a_short_lived_certificate_is_narrower() -> None:
    w = suggested_window(T0, T0 + timedelta(hours=160))
    ideal = T0 + timedelta(hours=160) * 2 / 3
    assert w.start == ideal - timedelta(hours=160) / 12
    assert w.end == ideal + timedelta(hours=160) / 12
    assert T0 < w.start < w.end < T0 + timedelta(hours=160)


def test_revoked_and_moved_windows() -> None:
    now = T0 + timedelta(days=10)
    r = revoked_window(now)
    assert r.start < r.end < now
    m = moved_window(now)
    assert m.start == now and m.end > now

"""The finalize CSR rules (RFC 8555 §7.4, §11.1) in acmekit.protocol.csr, with the
server's default key policy as the CSR's key rule."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from acmekit.protocol.csr import check_csr, csr_names
from acmekit.protocol.csr import make_csr as client_csr
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.keycheck import KeyPolicy, check_key

DNS = IdentifierType.DNS
IP = IdentifierType.IP


@cache
def ec_key(curve: str = "p256") -> ec.EllipticCurvePrivateKey:
    curves: dict[str, ec.EllipticCurve] = {
        "p256": ec.SECP256R1(),
        "p384": ec.SECP384R1(),
        "p521": ec.SECP521R1(),
        "k256": ec.SECP256K1(),
    }
    return ec.generate_private_key(curves[curve])


@cache
def rsa_key(bits: int = 2048, exponent: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def default_keys(key: object) -> None:
    check_key(key, KeyPolicy())  # type: ignore[arg-type]


def account_key() -> ec.EllipticCurvePrivateKey:
    return ec_key("p384")


def make_csr(
    key: CertificateIssuerPrivateKeyTypes,
    names: Sequence[str] = (),
    *,
    cn: str | None = None,
    extra: Sequence[x509.GeneralName] = (),
    extensions: Sequence[x509.ExtensionType] = (),
) -> bytes:
    """A DER CSR: `names` become dNSName or iPAddress SANs, `cn` the subject CN."""
    sans: list[x509.GeneralName] = list(extra)
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest).public_bytes(serialization.Encoding.DER)


def dns(*values: str) -> list[Identifier]:
    return [Identifier(DNS, v) for v in values]


def assert_problem(der: bytes, idents: Sequence[Identifier], ptype: ProblemType) -> str:
    with pytest.raises(AcmeError) as info:
        check_csr(der, idents, account_key().public_key(), default_keys)
    assert info.value.problem.type == ptype
    assert info.value.problem.status == 400
    return info.value.problem.detail


# --- accepted CSRs


def test_dns_names_accepted() -> None:
    der = make_csr(ec_key(), ["a.example.com", "b.example.com"], cn="a.example.com")
    csr = check_csr(
        der, dns("a.example.com", "b.example.com"), account_key().public_key(), default_keys
    )
    assert csr_names(csr) == set(dns("a.example.com", "b.example.com"))


def test_wildcard_accepted() -> None:
    der = make_csr(ec_key(), ["*.example.com", "example.com"])
    check_csr(der, dns("*.example.com", "example.com"), account_key().public_key(), default_keys)


def test_ip_addresses_accepted_and_compared_as_addresses() -> None:
    der = make_csr(ec_key(), ["192.0.2.7", "2001:db8:0:0::1"])
    idents = [Identifier(IP, "192.0.2.7"), Identifier(IP, "2001:db8::1")]
    csr = check_csr(der, idents, account_key().public_key(), default_keys)
    assert csr_names(csr) == set(idents)


def test_names_compared_case_insensitively() -> None:
    der = make_csr(ec_key(), ["WWW.Example.COM"], cn="www.EXAMPLE.com")
    check_csr(der, dns("www.example.com"), account_key().public_key(), default_keys)


def test_cn_alone_is_accepted() -> None:
    der = make_csr(ec_key(), [], cn="only.example.com")
    check_csr(der, dns("only.example.com"), account_key().public_key(), default_keys)


def test_cn_holding_an_ip_matches_an_ip_identifier() -> None:
    der = make_csr(ec_key(), ["192.0.2.1"], cn="192.0.2.1")
    check_csr(der, [Identifier(IP, "192.0.2.1")], account_key().public_key(), default_keys)


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_ecdsa_curves_accepted(curve: str) -> None:
    check_csr(
        make_csr(ec_key(curve), ["x.example.com"]),
        dns("x.example.com"),
        ec_key().public_key(),
        default_keys,
    )


def test_rsa_2048_accepted() -> None:
    check_csr(
        make_csr(rsa_key(), ["x.example.com"]),
        dns("x.example.com"),
        ec_key().public_key(),
        default_keys,
    )


def test_other_requested_extensions_are_ignored() -> None:
    extensions = [
        x509.TLSFeature([x509.TLSFeatureType.status_request]),
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]),
        x509.BasicConstraints(ca=False, path_length=None),
        x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
    ]
    der = make_csr(ec_key(), ["x.example.com"], extensions=extensions)
    check_csr(der, dns("x.example.com"), account_key().public_key(), default_keys)


# --- rejected CSRs: badCSR


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x01", b"not a csr at all"])
def test_garbage_is_bad_csr(der: bytes) -> None:
    assert_problem(der, dns("x.example.com"), ProblemType.BAD_CSR)


def test_truncated_csr_is_bad_csr() -> None:
    der = make_csr(ec_key(), ["x.example.com"])
    assert_problem(der[:-10], dns("x.example.com"), ProblemType.BAD_CSR)


@pytest.mark.parametrize("version", [1, 2, 127])
def test_other_versions_are_bad_csr(version: int) -> None:
    # RFC 2986 §4.1: version is 0 (v1); cryptography refuses others with an exception
    # of its own (InvalidVersion, not a ValueError), which must be badCSR too.
    der = make_csr(ec_key(), ["x.example.com"])
    at = der.index(b"\x02\x01\x00")  # CertificationRequestInfo's version, first INTEGER
    der = der[:at] + bytes([2, 1, version]) + der[at + 3 :]
    detail = assert_problem(der, dns("x.example.com"), ProblemType.BAD_CSR)
    assert "PKCS#10" in detail


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_tampered_signature_is_bad_csr(key: str) -> None:
    der = bytearray(make_csr(ec_key() if key == "ec" else rsa_key(), ["x.example.com"]))
    der[-1] ^= 0x01
    detail = assert_problem(bytes(der), dns("x.example.com"), ProblemType.BAD_CSR)
    assert "signature" in detail


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def test_csr_signed_by_another_key_is_bad_csr() -> None:
    """A request carrying one key but signed by another (RFC 2986 §4.2) must fail."""
    tbs = x509.load_der_x509_csr(make_csr(ec_key(), ["x.example.com"])).tbs_certrequest_bytes
    signature = ec_key("p384").sign(tbs, ec.ECDSA(hashes.SHA256()))
    der = _der(0x30, tbs + ECDSA_WITH_SHA256 + _der(0x03, b"\x00" + signature))
    assert x509.load_der_x509_csr(der).tbs_certrequest_bytes == tbs
    detail = assert_problem(der, dns("x.example.com"), ProblemType.BAD_CSR)
    assert "signature" in detail


SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")


def test_sha1_signature_is_bad_csr() -> None:
    tbs = x509.load_der_x509_csr(make_csr(rsa_key(), ["x.example.com"])).tbs_certrequest_bytes
    signature = rsa_key().sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    der = _der(0x30, tbs + SHA1_WITH_RSA + _der(0x03, b"\x00" + signature))
    assert "SHA-256" in assert_problem(der, dns("x.example.com"), ProblemType.BAD_CSR)


def test_account_key_reuse_is_bad_csr() -> None:
    der = make_csr(account_key(), ["x.example.com"])
    detail = assert_problem(der, dns("x.example.com"), ProblemType.BAD_CSR)
    assert "account key" in detail


def test_missing_name_is_bad_csr_naming_it() -> None:
    der = make_csr(ec_key(), ["a.example.com"])
    detail = assert_problem(der, dns("a.example.com", "b.example.com"), ProblemType.BAD_CSR)
    assert "missing b.example.com" in detail


def test_extra_name_is_bad_csr_naming_it() -> None:
    der = make_csr(ec_key(), ["a.example.com", "evil.example.net"])
    detail = assert_problem(der, dns("a.example.com"), ProblemType.BAD_CSR)
    assert "evil.example.net" in detail
    assert "missing" not in detail


def test_extra_cn_is_bad_csr() -> None:
    der = make_csr(ec_key(), [], cn="other.example.com")
    detail = assert_problem(der, dns("x.example.com"), ProblemType.BAD_CSR)
    assert "other.example.com" in detail


def test_cn_not_among_sans_is_bad_csr() -> None:
    der = make_csr(ec_key(), ["a.example.com"], cn="b.example.com")
    detail = assert_problem(der, dns("a.example.com", "b.example.com"), ProblemType.BAD_CSR)
    assert "common name" in detail


def test_wildcard_does_not_stand_for_its_base() -> None:
    der = make_csr(ec_key(), ["*.example.com"])
    assert_problem(der, dns("example.com"), ProblemType.BAD_CSR)


def test_ip_versus_dns_type_matters() -> None:
    der = make_csr(ec_key(), ["192.0.2.1"])
    assert_problem(der, dns("192.0.2.1"), ProblemType.BAD_CSR)


def test_no_names_is_bad_csr() -> None:
    detail = assert_problem(make_csr(ec_key(), []), dns("x.example.com"), ProblemType.BAD_CSR)
    assert "no identifiers" in detail


def test_email_san_is_bad_csr() -> None:
    der = make_csr(ec_key(), ["x.example.com"], extra=[x509.RFC822Name("a@example.com")])
    detail = assert_problem(der, dns("x.example.com"), ProblemType.BAD_CSR)
    assert "a@example.com" in detail


def test_ca_request_is_bad_csr() -> None:
    der = make_csr(
        ec_key(), ["x.example.com"], extensions=[x509.BasicConstraints(ca=True, path_length=None)]
    )
    assert_problem(der, dns("x.example.com"), ProblemType.BAD_CSR)


# --- rejected CSRs: badPublicKey


@pytest.mark.parametrize(
    ("bits", "exponent", "words"),
    [(1024, 65537, "1024 bits"), (2052, 65537, "multiple of 8"), (2048, 3, "exponent 3")],
)
def test_weak_rsa_is_bad_public_key(bits: int, exponent: int, words: str) -> None:
    der = make_csr(rsa_key(bits, exponent), ["x.example.com"])
    assert words in assert_problem(der, dns("x.example.com"), ProblemType.BAD_PUBLIC_KEY)


@pytest.mark.parametrize("curve", ["p521", "k256"])
def test_other_curves_are_bad_public_key(curve: str) -> None:
    der = make_csr(ec_key(curve), ["x.example.com"])
    assert "P-256" in assert_problem(der, dns("x.example.com"), ProblemType.BAD_PUBLIC_KEY)


def test_ed25519_is_bad_public_key() -> None:
    der = make_csr(ed25519.Ed25519PrivateKey.generate(), ["x.example.com"])
    detail = assert_problem(der, dns("x.example.com"), ProblemType.BAD_PUBLIC_KEY)
    assert detail.startswith("Ed25519 keys are not accepted")


def test_the_key_rule_is_the_callers() -> None:
    """The bounds are the caller's (the server's configured [keys]), not fixed here."""
    der = make_csr(rsa_key(2048), ["x.example.com"])
    seen: list[int] = []

    def record(key: object) -> None:
        assert isinstance(key, rsa.RSAPublicKey)
        seen.append(key.key_size)

    check_csr(der, dns("x.example.com"), account_key().public_key(), record)
    assert seen == [2048]
    strict = KeyPolicy(rsa_min_bits=3072)
    with pytest.raises(AcmeError) as info:
        check_csr(
            der, dns("x.example.com"), account_key().public_key(), lambda k: check_key(k, strict)
        )  # type: ignore[arg-type]
    assert info.value.problem.type == ProblemType.BAD_PUBLIC_KEY


# --- the CSR our client and the fleet build


def common_names(der: bytes) -> list[str]:
    csr = x509.load_der_x509_csr(der)
    return [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def default_key_rule(key: object) -> None:
    check_key(key, KeyPolicy())  # type: ignore[arg-type]


def test_client_csr_passes_the_finalize_rules_with_ips_and_a_long_name() -> None:
    long_name = "a" * 60 + ".example.com"
    names = [long_name, "192.0.2.9", "www.example.com", "2001:db8::9"]
    der = client_csr(ec_key(), names)
    idents = [*dns(long_name, "www.example.com"), Identifier(IP, "192.0.2.9")]
    idents.append(Identifier(IP, "2001:db8::9"))
    check_csr(der, idents, account_key().public_key(), default_key_rule)
    assert common_names(der) == ["www.example.com"]


def test_client_csr_for_addresses_only_has_an_empty_subject() -> None:
    der = client_csr(ec_key(), ["192.0.2.10"])
    check_csr(der, [Identifier(IP, "192.0.2.10")], account_key().public_key(), default_key_rule)
    assert common_names(der) == []


def test_client_csr_signs_with_ed25519() -> None:
    csr = x509.load_der_x509_csr(client_csr(ed25519.Ed25519PrivateKey.generate(), ["e.example"]))
    assert csr.is_signature_valid
    assert common_names(csr.public_bytes(serialization.Encoding.DER)) == ["e.example"]

"""The CA hierarchy, subscriber certificates and the listener certificate (acmekit.server.ca)."""

from __future__ import annotations

import asyncio
import ssl
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    Issuer,
    issue_certificate,
    listener_credentials,
    load_or_create_issuer,
    new_serial,
    pem_chain,
)

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
OPENSSL = "/usr/bin/openssl"
DNS = IdentifierType.DNS
IP = IdentifierType.IP


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ca") / "state"


@pytest.fixture(scope="module")
def issuer(state_dir: Path) -> Issuer:
    return load_or_create_issuer(state_dir, NOW)


def spki(cert_or_key: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    pub = cert_or_key.public_key()
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def make_csr(key: CertificateIssuerPrivateKeyTypes, name: str) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
    )
    return builder.sign(key, hashes.SHA256())


def issue(
    issuer: Issuer,
    identifiers: list[Identifier],
    key: CertificateIssuerPrivateKeyTypes | None = None,
    crl_url: str | None = None,
) -> x509.Certificate:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return issue_certificate(
        issuer,
        make_csr(key, "ignored.example"),
        identifiers,
        serial=new_serial(),
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        crl_url=crl_url,
    )


def openssl_verify(state_dir: Path, leaf_pem: Path, at: datetime = NOW) -> None:
    """Run `openssl verify` against root.pem with intermediate.pem as untrusted."""
    result = subprocess.run(
        [
            OPENSSL,
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-attime",
            str(int(at.timestamp())),
            "-CAfile",
            str(state_dir / "root.pem"),
            "-untrusted",
            str(state_dir / "intermediate.pem"),
            str(leaf_pem),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


def ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


# --- the hierarchy


def test_creates_files_with_private_modes(issuer: Issuer, state_dir: Path) -> None:
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    for name in ("root.key", "intermediate.key"):
        assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600
    for name in ("root.pem", "intermediate.pem"):
        assert (state_dir / name).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert not [p for p in state_dir.iterdir() if p.name.startswith(".")]


def test_reload_keeps_the_same_keys(issuer: Issuer, state_dir: Path) -> None:
    again = load_or_create_issuer(state_dir, NOW + timedelta(days=3))
    assert again.root_cert == issuer.root_cert
    assert again.intermediate_cert == issuer.intermediate_cert
    assert isinstance(again.root_key, ec.EllipticCurvePrivateKey)
    assert isinstance(again.intermediate_key, ec.EllipticCurvePrivateKey)
    assert spki(again.root_key) == spki(issuer.root_cert)
    assert spki(again.intermediate_key) == spki(issuer.intermediate_cert)


def test_root_profile(issuer: Issuer) -> None:
    root = issuer.root_cert
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]
    assert root.issuer == root.subject
    assert root.not_valid_after_utc - NOW == timedelta(days=3650)
    constraints = ext(root, x509.BasicConstraints)
    assert constraints.critical and constraints.value == x509.BasicConstraints(True, None)
    usage = ext(root, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    ski = ext(root, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(root.public_key())
    root.verify_directly_issued_by(root)


def test_intermediate_profile(issuer: Issuer) -> None:
    inter = issuer.intermediate_cert
    assert inter.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert inter.issuer == issuer.root_cert.subject
    assert inter.not_valid_after_utc - NOW == timedelta(days=1825)
    assert ext(inter, x509.BasicConstraints).value == x509.BasicConstraints(True, 0)
    root_ski = ext(issuer.root_cert, x509.SubjectKeyIdentifier).value
    aki = ext(inter, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(root_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == root_ski.digest
    inter.verify_directly_issued_by(issuer.root_cert)
    assert issuer.chain_pem() == inter.public_bytes(serialization.Encoding.PEM)


def test_missing_intermediate_is_recreated_under_the_same_root(tmp_path: Path) -> None:
    first = load_or_create_issuer(tmp_path, NOW, name="example")
    (tmp_path / "intermediate.pem").unlink()
    second = load_or_create_issuer(tmp_path, NOW)
    assert second.root_cert == first.root_cert
    assert second.intermediate_cert != first.intermediate_cert
    second.intermediate_cert.verify_directly_issued_by(first.root_cert)
    cn = first.root_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "example root"


def test_mismatched_key_file_is_refused(tmp_path: Path) -> None:
    load_or_create_issuer(tmp_path, NOW)
    other = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "root.key").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match=r"root\.key"):
        load_or_create_issuer(tmp_path, NOW)


# --- subscriber certificates


def test_issued_chain_verifies_with_openssl(
    issuer: Issuer, state_dir: Path, tmp_path: Path
) -> None:
    cert = issue(issuer, [Identifier(DNS, "www.example.com"), Identifier(IP, "192.0.2.1")])
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    openssl_verify(state_dir, leaf, NOW + timedelta(days=1))


def test_leaf_extensions(issuer: Issuer) -> None:
    idents = [Identifier(DNS, "a.example.com"), Identifier(DNS, "*.example.com")]
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue(issuer, idents, key, crl_url="http://127.0.0.1:14000/crl/1")
    assert cert.subject.rfc4514_string() == "CN=a.example.com"
    assert cert.issuer == issuer.intermediate_cert.subject
    assert spki(cert) == spki(key)
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=90)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert isinstance(san.value, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["a.example.com", "*.example.com"]
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.digital_signature and not usage.value.key_encipherment
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value == x509.BasicConstraints(False, None)
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        key.public_key()
    )
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    inter_ski = ext(issuer.intermediate_cert, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(inter_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == inter_ski.digest
    points = ext(cert, x509.CRLDistributionPoints).value
    assert isinstance(points, x509.CRLDistributionPoints)
    assert points[0].full_name == [x509.UniformResourceIdentifier("http://127.0.0.1:14000/crl/1")]
    cert.verify_directly_issued_by(issuer.intermediate_cert)


def test_rsa_leaf_has_key_encipherment_and_no_crl_point(issuer: Issuer) -> None:
    cert = issue(
        issuer, [Identifier(DNS, "rsa.example.com")], rsa.generate_private_key(65537, 2048)
    )
    usage = ext(cert, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert usage.digital_signature and usage.key_encipherment
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.CRLDistributionPoints)


def test_long_or_missing_dns_name_gives_empty_subject_and_critical_san(
    issuer: Issuer, state_dir: Path, tmp_path: Path
) -> None:
    long_name = "a" * 60 + ".example.com"
    for idents in ([Identifier(DNS, long_name)], [Identifier(IP, "2001:db8::1")]):
        cert = issue(issuer, idents)
        assert len(cert.subject) == 0
        assert ext(cert, x509.SubjectAlternativeName).critical
        leaf = tmp_path / "leaf.pem"
        leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        openssl_verify(state_dir, leaf)


def test_cn_is_the_first_dns_identifier(issuer: Issuer) -> None:
    cert = issue(issuer, [Identifier(IP, "192.0.2.9"), Identifier(DNS, "b.example.com")])
    assert cert.subject.rfc4514_string() == "CN=b.example.com"
    assert not ext(cert, x509.SubjectAlternativeName).critical


def test_pem_chain_is_leaf_then_intermediate(issuer: Issuer) -> None:
    cert = issue(issuer, [Identifier(DNS, "x.example.com")])
    chain = x509.load_pem_x509_certificates(pem_chain(cert, issuer).encode())
    assert chain == [cert, issuer.intermediate_cert]


def test_new_serial_is_positive_and_bounded() -> None:
    assert new_serial(lambda n: b"\x00" * n) == 1 << 126
    assert new_serial(lambda n: b"\xff" * n) == (1 << 127) - 1
    serials = {new_serial() for _ in range(100)}
    assert len(serials) == 100
    assert all(0 < s < 2**159 and s.bit_length() == 127 for s in serials)
    with pytest.raises(ValueError):
        new_serial(lambda n: b"\x01")


# --- the listener certificate


def listener_leaf(chain: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(chain.read_bytes())


def san_values(cert: x509.Certificate) -> set[str]:
    san = ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }


def test_listener_reused_then_reissued_for_new_hosts(issuer: Issuer, tmp_path: Path) -> None:
    chain, key = listener_credentials(issuer, tmp_path, ["acme.example.test"], NOW)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = listener_leaf(chain)
    assert first[1:] == [issuer.intermediate_cert]
    assert san_values(first[0]) == {"acme.example.test", "localhost", "127.0.0.1"}

    again, _ = listener_credentials(issuer, tmp_path, ["ACME.example.test", "localhost"], NOW)
    assert listener_leaf(again) == first

    other, _ = listener_credentials(issuer, tmp_path, ["other.example.test", "[::1]"], NOW)
    second = listener_leaf(other)
    assert second[0] != first[0]
    assert san_values(second[0]) == {"other.example.test", "::1", "localhost", "127.0.0.1"}


def test_listener_reissued_near_expiry(issuer: Issuer, tmp_path: Path) -> None:
    chain, _ = listener_credentials(issuer, tmp_path, [], NOW)
    first = listener_leaf(chain)[0]
    later = first.not_valid_after_utc - timedelta(days=31)
    assert listener_leaf(listener_credentials(issuer, tmp_path, [], later)[0])[0] == first
    soon = first.not_valid_after_utc - timedelta(days=29)
    renewed = listener_leaf(listener_credentials(issuer, tmp_path, [], soon)[0])[0]
    assert renewed != first
    assert renewed.not_valid_after_utc > first.not_valid_after_utc


def test_listener_reissued_for_a_new_intermediate(issuer: Issuer, tmp_path: Path) -> None:
    chain, _ = listener_credentials(issuer, tmp_path, [], NOW)
    first = listener_leaf(chain)[0]
    other = load_or_create_issuer(tmp_path / "other-ca", NOW)
    renewed = listener_leaf(listener_credentials(other, tmp_path, [], NOW)[0])
    assert renewed[0] != first
    renewed[0].verify_directly_issued_by(other.intermediate_cert)


async def test_listener_serves_tls_trusted_by_root(tmp_path: Path) -> None:
    """A real TLS handshake on loopback, the client trusting only root.pem."""
    now = datetime.now(UTC)
    issuer = load_or_create_issuer(tmp_path, now)
    chain, key = listener_credentials(issuer, tmp_path, ["localhost"], now)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(chain, key)
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "root.pem"))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        for name in ("localhost", "127.0.0.1"):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=name
            )
            assert await reader.readline() == b"hello\n"
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()

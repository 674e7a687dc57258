"""A tls-alpn-01 certificate whose names the parser reads no further (an x400Address in
its subjectAltName) is the client's wrong answer, `incorrectResponse` (RFC 8737 §3: one
subjectAltName, a dNSName or an iPAddress), not a `connection` problem. A real TLS
responder on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from acmekit.protocol.challenges import ACME_IDENTIFIER_OID, acme_identifier_extension_value
from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.validation import ValidationConfig, Validator
from acmekit_testkit.acmekit_server import LOOPBACK_NETWORKS
from acmekit_testkit.ports import free_port
from acmekit_testkit.tlsalpn_responder import tlsalpn_responder

TOKEN = "Ux2XeIsVHqM2nWQJZ8tYqGfv5xWwWk0WWnbuFrYMC9Q"
KEY_AUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
IDENT = Identifier(IdentifierType.IP, "127.0.0.1")
KEY = ec.generate_private_key(ec.SECP256R1())
# subjectAltName: SEQUENCE { [3] x400Address (an empty ORAddress) }
X400_SAN = bytes.fromhex("3004a3023000")


def _x400_certificate() -> x509.Certificate:
    """The validation certificate (acmeIdentifier right) with an x400Address SAN."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME tls-alpn-01 challenge")])
    now = datetime.now(UTC)
    san = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, X400_SAN)
    acme = x509.UnrecognizedExtension(
        ACME_IDENTIFIER_OID, acme_identifier_extension_value(KEY_AUTH)
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(acme, critical=True)
        .sign(KEY, hashes.SHA256())
    )


async def test_an_x400_address_is_an_incorrect_response() -> None:
    async with tlsalpn_responder(_x400_certificate(), KEY) as port:
        config = ValidationConfig(
            allow_networks=LOOPBACK_NETWORKS,
            dns_resolver=("127.0.0.1", free_port()),  # asked nothing: an IP identifier
            tlsalpn01_port=port,
            timeout=10.0,
        )
        try:
            await Validator(config).validate(ChallengeType.TLS_ALPN_01, IDENT, TOKEN, KEY_AUTH)
        except AcmeError as exc:
            problem = exc.problem
        else:
            raise AssertionError("the certificate was taken")
    assert problem.type == ProblemType.INCORRECT_RESPONSE, problem.detail
    assert "x400Address" in problem.detail

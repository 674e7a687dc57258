"""The tls-alpn-01 validation certificate (RFC 8737 §3), built and read without I/O.

A responder presents, for connections that negotiate ALPN `acme-tls/1`, a self-signed
certificate whose only subjectAltName is the identifier being validated (a dNSName, or an
iPAddress for IP identifiers, RFC 8738 §6) and which carries the critical id-pe-acmeIdentifier
extension: an OCTET STRING holding SHA-256 of the key authorization.

`tlsalpn01_certificate` builds it (for the client's solver and for tests); the validation
authority checks it with `check_tlsalpn01_certificate`, which returns what is wrong, if
anything, so that the caller decides how to report it. No clock is read: the validity
period is fixed and wide unless `now` is given, since validators do not check it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from acmekit.protocol.challenges import ACME_IDENTIFIER_OID, acme_identifier_extension_value
from acmekit.protocol.jose import PrivateKey
from acmekit.protocol.messages import Identifier, IdentifierType

_FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def tlsalpn01_sni(identifier: Identifier) -> str:
    """The server name a validator sends: the name, or an IP's reverse name (RFC 8738 §6)."""
    if identifier.type == IdentifierType.IP:
        return ipaddress.ip_address(identifier.value).reverse_pointer
    return identifier.value


def tlsalpn01_san(identifier: Identifier) -> x509.GeneralName:
    """The one subjectAltName entry the certificate must carry."""
    if identifier.type == IdentifierType.IP:
        return x509.IPAddress(ipaddress.ip_address(identifier.value))
    return x509.DNSName(identifier.value.lower())


def tlsalpn01_certificate(
    identifier: Identifier,
    key_authorization: str,
    key: PrivateKey,
    *,
    now: datetime | None = None,
) -> x509.Certificate:
    """A self-signed RFC 8737 validation certificate for `identifier`, signed by `key`."""
    digest = hashlib.sha256(key_authorization.encode()).digest()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME tls-alpn-01 challenge")])
    not_before, not_after = (
        (_FAR_PAST, _FAR_FUTURE)
        if now is None
        else (now - timedelta(hours=1), now + timedelta(days=7))
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        # Unique per key authorization without a random source: positive, under 20 octets.
        .serial_number(int.from_bytes(digest[:16], "big") >> 1 | 1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([tlsalpn01_san(identifier)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(
                ACME_IDENTIFIER_OID, acme_identifier_extension_value(key_authorization)
            ),
            critical=True,
        )
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def check_tlsalpn01_certificate(
    cert: x509.Certificate, identifier: Identifier, key_authorization: str
) -> str | None:
    """None if `cert` proves the key authorization for `identifier`, else what is wrong.

    RFC 8737 §3: exactly one subjectAltName, equal to the identifier, and a critical
    acmeIdentifier extension whose value is the DER OCTET STRING of the digest. Raises
    ValueError if the certificate's extensions cannot be parsed.
    """
    try:
        extensions = cert.extensions
    except x509.UnsupportedGeneralNameType:
        # An x400Address or ediPartyName, which the parser reads no further: a well-formed
        # certificate, so the client's answer, and not the one §3 asks for (its one
        # subjectAltName a dNSName or an iPAddress): an incorrect response, not a TLS fault.
        return "the certificate holds an x400Address or ediPartyName general name"
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the certificate has no subjectAltName extension"
    names = list(san)
    if names != [tlsalpn01_san(identifier)] and not _same_dns_name(names, identifier):
        shown = ", ".join(_show(n) for n in names[:5])
        return f"the certificate's subjectAltName must be exactly {identifier.value}, not [{shown}]"
    try:
        ext = extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        return "the certificate has no acmeIdentifier extension"
    if not ext.critical:
        return "the certificate's acmeIdentifier extension is not marked critical"
    expected = acme_identifier_extension_value(key_authorization)
    if not hmac.compare_digest(ext.value.public_bytes(), expected):
        return "the certificate's acmeIdentifier does not match the key authorization"
    return None


def _same_dns_name(names: list[x509.GeneralName], identifier: Identifier) -> bool:
    """DNS names compare without regard to ASCII case (RFC 4343 §3). A dNSName is an
    IA5String, yet the parser takes other octets: the Kelvin sign (U+212A) lower-cases
    to "k", so a name holding it is compared as it is, and equals no identifier."""
    return (
        identifier.type == IdentifierType.DNS
        and len(names) == 1
        and isinstance(names[0], x509.DNSName)
        and names[0].value.isascii()
        and names[0].value.lower() == identifier.value.lower()
    )


def _show(name: x509.GeneralName) -> str:
    value = getattr(name, "value", name)
    return f"{type(name).__name__}:{value}"[:100]

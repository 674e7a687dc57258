"""ACME Renewal Information (RFC 9773) names a certificate by its certID (§4.1).

`base64url(AKI keyIdentifier) "." base64url(serial)`, the serial being the contents
octets of its DER INTEGER: big-endian two's complement, minimal, so a serial whose top
bit is set gains a leading zero octet. Both the client (to ask for a window, and to
send `replaces`) and the CA (to answer) use these rules.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from cryptography import x509

from acmekit.protocol.jose import b64d, b64e
from acmekit.protocol.problems import AcmeError, malformed

_B64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class CertId:
    key_id: bytes  # the issuer's key identifier (the certificate's AKI)
    serial: int

    def __str__(self) -> str:
        return f"{b64e(self.key_id)}.{b64e(serial_bytes(self.serial))}"


def serial_bytes(serial: int) -> bytes:
    """The contents octets of a DER INTEGER for a non-negative serial."""
    if serial < 0:
        raise ValueError("serial numbers are positive")
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def cert_id_of(cert: x509.Certificate) -> CertId:
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    if aki.key_identifier is None:
        raise ValueError("certificate has no authority key identifier")
    return CertId(aki.key_identifier, cert.serial_number)


def parse_cert_id(text: str) -> CertId:
    """Parse a certID; `malformed` unless both halves are unpadded base64url and the
    serial is a minimal, positive DER integer."""
    key_part, dot, serial_part = text.partition(".")
    if not dot or not _B64URL.fullmatch(key_part) or not _B64URL.fullmatch(serial_part):
        raise malformed(f"{text!r} is not a certID (keyIdentifier.serial)")
    try:
        key_id, raw = b64d(key_part), b64d(serial_part)
    except (AcmeError, ValueError, binascii.Error) as exc:
        raise malformed(f"{text!r} is not a certID: bad base64url") from exc
    if not key_id or not raw or raw[0] & 0x80:
        raise malformed(f"{text!r} is not a certID: bad serial")
    serial = int.from_bytes(raw, "big")
    if serial_bytes(serial) != raw:
        raise malformed(f"{text!r} is not a certID: serial is not minimally encoded")
    return CertId(key_id, serial)

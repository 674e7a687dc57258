"""What a challenge asks for: key authorizations and their three encodings.

RFC 8555 §8.1 (key authorization), §8.3 (http-01), §8.4 (dns-01), RFC 8737 (tls-alpn-01).
"""

from __future__ import annotations

import hashlib

from cryptography import x509

from acmekit.protocol.jose import PrivateKey, PublicKey, b64e, thumbprint

# RFC 8737 §3: id-pe-acmeIdentifier, and the ALPN protocol name.
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
ACME_TLS_ALPN = "acme-tls/1"
HTTP01_PATH = "/.well-known/acme-challenge/"
DNS01_LABEL = "_acme-challenge"


def key_authorization(token: str, account_key: PublicKey | PrivateKey | dict[str, str]) -> str:
    """§8.1: token || '.' || base64url(JWK thumbprint of the account key)."""
    return f"{token}.{thumbprint(account_key)}"


def dns01_txt_value(key_auth: str) -> str:
    """§8.4: base64url(SHA-256(key authorization)), the TXT record's value."""
    return b64e(hashlib.sha256(key_auth.encode()).digest())


def dns01_record_name(name: str) -> str:
    """The TXT owner for a name; a wildcard is validated at its base name (§8.4)."""
    return f"{DNS01_LABEL}.{name.removeprefix('*.')}"


def tlsalpn01_digest(key_auth: str) -> bytes:
    """RFC 8737 §3: SHA-256 of the key authorization, carried in acmeIdentifier."""
    return hashlib.sha256(key_auth.encode()).digest()


def acme_identifier_extension_value(key_auth: str) -> bytes:
    """DER of the extension value: an OCTET STRING holding the 32-byte digest."""
    digest = tlsalpn01_digest(key_auth)
    return b"\x04\x20" + digest


def token_is_wellformed(token: str) -> bool:
    """§8.1: a token is base64url with at least 128 bits of entropy (>= 22 chars)."""
    ok = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    return len(token) >= 22 and set(token) <= ok

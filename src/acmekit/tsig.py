"""TSIG keys (RFC 8945) as both the DNS server and the RFC 2136 client take them.

One table of algorithm names (RFC 8945 §6), read case-insensitively and with or without
the trailing dot, so `HMAC-SHA512` from a certbot credentials file and `hmac-sha512`
from `acmekit dns --tsig-key` name the same algorithm; and one way to make a key from a
name, a base64 secret and an algorithm name. Errors are ValueErrors whose message says
what to fix; each side turns them into its own kind of complaint.
"""

from __future__ import annotations

import base64
import binascii

import dns.name
import dns.tsig

ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
DEFAULT_ALGORITHM = "hmac-sha256"


def algorithm(name: str) -> dns.name.Name:
    """`HMAC-SHA512`, `hmac-sha512` or `hmac-sha512.`: the TSIG algorithm's name."""
    found = ALGORITHMS.get(name.strip().lower().rstrip("."))
    if found is None:
        raise ValueError(
            f"unknown TSIG algorithm {name!r}; use one of "
            + ", ".join(a.upper() for a in ALGORITHMS)
        )
    return found


def make_key(key_name: str, secret_b64: str, algorithm_name: str) -> dns.tsig.Key:
    """The key `key_name` with the base64 `secret_b64` for `algorithm_name`."""
    try:
        secret = base64.b64decode(secret_b64.strip(), validate=True)
    except binascii.Error:
        raise ValueError("the TSIG secret is not base64") from None
    if not secret:
        raise ValueError("the TSIG secret is empty")
    return dns.tsig.Key(dns.name.from_text(key_name), secret, algorithm(algorithm_name))

"""TSIG keys (RFC 8945): parsing `[ALG:]NAME:BASE64SECRET` and the unsigned error record.

Signature checking and signing of good messages is dnspython's. What it does not give is
the answer RFC 8945 §5.2 asks for when the key is unknown (BADKEY) or the MAC is wrong
(BADSIG): RCODE NOTAUTH with a TSIG record whose MAC is empty, since the server cannot or
must not sign with that key. `append_error_tsig` adds that record to a finished message.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
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
Keyring = dict[dns.name.Name, dns.tsig.Key]


def parse_key(spec: str) -> dns.tsig.Key:
    """`[ALG:]NAME:BASE64SECRET` as nsupdate's -y takes it; ALG defaults to hmac-sha256."""
    parts = spec.split(":")
    if len(parts) == 2:
        parts.insert(0, DEFAULT_ALGORITHM)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ValueError("a TSIG key is [ALG:]NAME:BASE64SECRET")
    alg_text, name, secret = parts
    algorithm = ALGORITHMS.get(alg_text.lower())
    if algorithm is None:
        raise ValueError(f"unknown TSIG algorithm {alg_text!r}; use one of {sorted(ALGORITHMS)}")
    try:
        raw = base64.b64decode(secret, validate=True)
    except binascii.Error:
        raise ValueError("TSIG secret is not base64") from None
    if not raw:
        raise ValueError("empty TSIG secret")
    return dns.tsig.Key(dns.name.from_text(name), raw, algorithm)


def make_keyring(keys: Iterable[dns.tsig.Key]) -> Keyring:
    return {key.name: key for key in keys}


def append_error_tsig(
    wire: bytes,
    keyname: dns.name.Name,
    request: dns.rdtypes.ANY.TSIG.TSIG,
    error: int,
) -> bytes:
    """Append an unsigned TSIG RR carrying `error` (BADKEY, BADSIG) to a wire message.

    RDATA layout (RFC 8945 §4.2): algorithm name, 48-bit time signed, fudge, MAC size
    and MAC (empty here), original ID, error, other length and other data (empty).
    """
    algorithm = request.algorithm.to_wire()
    assert algorithm is not None
    signed = request.time_signed
    body: bytes = algorithm + struct.pack(
        "!HIHHHHH",
        signed >> 32,
        signed & 0xFFFFFFFF,
        request.fudge,
        0,
        request.original_id,
        error,
        0,
    )
    owner = keyname.to_wire()
    assert owner is not None
    record: bytes = (
        owner + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(body)) + body
    )
    arcount: int = struct.unpack("!H", wire[10:12])[0]
    header: bytes = struct.pack("!H", arcount + 1)
    return wire[:10] + header + wire[12:] + record

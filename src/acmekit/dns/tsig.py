"""TSIG on the DNS server (RFC 8945): `--tsig-key [ALG:]NAME:BASE64SECRET` and the
unsigned error record. The algorithm table and key making are `acmekit.tsig`'s, shared
with the RFC 2136 client.

Signature checking and signing of good messages is dnspython's. What it does not give is
the answer RFC 8945 §5.2 asks for when the key is unknown (BADKEY) or the MAC is wrong
(BADSIG): RCODE NOTAUTH with a TSIG record whose MAC is empty, since the server cannot or
must not sign with that key. `append_error_tsig` adds that record to a finished message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from acmekit.tsig import DEFAULT_ALGORITHM, make_key

Keyring = dict[dns.name.Name, dns.tsig.Key]


def parse_key(spec: str) -> dns.tsig.Key:
    """`[ALG:]NAME:BASE64SECRET` as nsupdate's -y takes it; ALG defaults to hmac-sha256."""
    parts = spec.split(":")
    if len(parts) == 2:
        parts.insert(0, DEFAULT_ALGORITHM)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ValueError("a TSIG key is [ALG:]NAME:BASE64SECRET")
    alg_text, name, secret = parts
    return make_key(name, secret, alg_text)


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

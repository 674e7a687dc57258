"""TSIG on the DNS server (RFC 8945): `--tsig-key [ALG:]NAME:BASE64SECRET` and the
unsigned error record. The algorithm table and key making are `acmekit.tsig`'s, shared
with the RFC 2136 client.

Signature checking and signing of good messages is dnspython's. What it does not give:

- the answer RFC 8945 §5.2 asks for when the key is unknown (BADKEY) or the MAC is wrong
  (BADSIG): RCODE NOTAUTH with a TSIG record whose MAC is empty, since the server cannot
  or must not sign with that key (§5.3.2). `append_error_tsig` adds that record.
- the answer to a request whose MAC is good but whose time is outside the fudge, or
  that was accepted already (a replay: BADTIME, §5.2.3), or whose MAC is truncated
  below our policy (BADTRUNC, §5.2.2.1): signed with the key over the request's MAC and
  the response (§5.3.2), with the request's Time Signed, so that a client whose clock is
  off can still verify it, and for BADTIME the server's time in Other Data.
  `append_signed_error_tsig` adds that record. We accept no truncated MAC: one shorter
  than the larger of 10 octets and half the hash is FORMERR, a longer one BADTRUNC.
- the replay check of §5.2.3: `TimesSigned` keeps, per key, the MACs of the UPDATEs
  accepted while their Time Signed is within the fudge of now; the same request again is
  a replay (BADTIME). Requests are not ordered by time, so one client's fast clock does
  not shut out the others on its key.
- a bound on the fudge: dnspython honours the request's own, up to 65,535 s, which would
  let a signer widen its key's replay window (and how long its MACs are kept) to 18
  hours. We honour at most MAX_FUDGE, the 300 s RFC 8945 §10 recommends and BIND uses
  as its own: a request signed further from our clock is BADTIME whatever its fudge says
  (`outside_window`).
"""

from __future__ import annotations

import base64
import hmac
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from acmekit.tsig import DEFAULT_ALGORITHM, make_key

Keyring = dict[dns.name.Name, dns.tsig.Key]

# UPDATEs accepted per key within their time window, remembered to refuse their replay
MAX_MACS_PER_KEY = 10_000
# The most clock skew honoured, whatever fudge a request claims (RFC 8945 §10: 300 s)
MAX_FUDGE = 300


def honoured_fudge(fudge: int) -> int:
    """The skew allowed a request whose TSIG claims `fudge`: never more than ours."""
    return min(fudge, MAX_FUDGE)


def outside_window(time_signed: int, fudge: int, now: int) -> bool:
    """Is `time_signed` further from `now` than the fudge we honour (RFC 8945 §5.2.3)?"""
    return abs(time_signed - now) > honoured_fudge(fudge)


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
    return _append(wire, keyname, body)


def append_signed_error_tsig(
    wire: bytes,
    key: dns.tsig.Key,
    request: dns.rdtypes.ANY.TSIG.TSIG,
    error: int,
    now: int | None = None,
) -> bytes:
    """Append a TSIG RR carrying `error`, signed with `key` (RFC 8945 §5.3.2): the MAC
    covers the request's MAC, the response and the TSIG variables. Time Signed is the
    request's; with `now`, Other Data is the server's time (48 bits, BADTIME)."""
    other = b"" if now is None else struct.pack("!HI", now >> 32 & 0xFFFF, now & 0xFFFFFFFF)
    unsigned = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
        dns.rdataclass.ANY,
        dns.rdatatype.TSIG,
        key.algorithm,
        request.time_signed,
        request.fudge,
        b"",
        request.original_id,
        error,
        other,
    )
    signed = _sign(wire, key, unsigned, request.mac)
    return _append(wire, key.name, signed.to_wire())


def _sign(
    wire: bytes,
    key: dns.tsig.Key,
    rdata: dns.rdtypes.ANY.TSIG.TSIG,
    request_mac: bytes | None,
) -> dns.rdtypes.ANY.TSIG.TSIG:
    """`rdata` with the MAC of `wire` (dnspython's), at `rdata`'s own Time Signed."""
    signed, _ = dns.tsig.sign(  # type: ignore[no-untyped-call]
        wire, key, rdata, rdata.time_signed, request_mac
    )
    assert isinstance(signed, dns.rdtypes.ANY.TSIG.TSIG)
    return signed


def _append(wire: bytes, keyname: dns.name.Name, body: bytes | None) -> bytes:
    owner = keyname.to_wire()
    assert owner is not None and body is not None
    head = struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(body))
    arcount: int = struct.unpack("!H", wire[10:12])[0]
    return wire[:10] + struct.pack("!H", arcount + 1) + wire[12:] + owner + head + body


def truncation_error(key: dns.tsig.Key, request: dns.rdtypes.ANY.TSIG.TSIG) -> int | None:
    """FORMERR or BADTRUNC for a MAC shorter than `key`'s hash (RFC 8945 §5.2.2.1), or
    None for a full one (or another algorithm: that is BADKEY, found later)."""
    full = dns.tsig.mac_sizes.get(key.algorithm)
    if full is None or request.algorithm != key.algorithm or len(request.mac) >= full:
        return None
    if len(request.mac) < max(10, full // 2):
        return int(dns.rcode.FORMERR)
    return int(dns.rcode.BADTRUNC)


def truncated_mac_matches(
    wire: bytes, key: dns.tsig.Key, request: dns.rdtypes.ANY.TSIG.TSIG
) -> bool:
    """Is the request's truncated MAC the start of the MAC `key` gives the request?

    The TSIG RR is the message's last (§5.1); it is found from the end: its RDATA, the
    10 octets before, then its owner, written whole or as one compression pointer.
    """
    body = request.to_wire()
    assert body is not None
    end = len(wire) - len(body) - 10
    owner = key.name.to_wire()
    assert owner is not None
    if wire[end - len(owner) : end].lower() == owner.lower():
        start = end - len(owner)
    elif end >= 2 and wire[end - 2] & 0xC0 == 0xC0:
        start = end - 2
    else:
        return False
    arcount: int = struct.unpack("!H", wire[10:12])[0]
    if start < 12 or arcount == 0:
        return False
    unsigned = wire[:10] + struct.pack("!H", arcount - 1) + wire[12:start]
    blank = request.replace(mac=b"")
    assert isinstance(blank, dns.rdtypes.ANY.TSIG.TSIG)
    signed = _sign(unsigned, key, blank, None)
    return hmac.compare_digest(signed.mac[: len(request.mac)], request.mac)


class TimesSigned:
    """Per key, the MACs of the UPDATEs accepted that are still within their time
    window (Time Signed ± the fudge we honour, `honoured_fudge`), and until when: the
    same request again is a replay (RFC 8945 §5.2.3). Once its window has passed the
    time check refuses a request anyway, so its entry is forgotten. Requests are not
    ordered by their Time Signed: a client whose clock is fast, yet within the fudge,
    must not shut out the others on its key. A key holds at most MAX_MACS_PER_KEY
    entries; past that its UPDATEs are refused until some expire. Kept in this process only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._seen: dict[dns.name.Name, dict[bytes, int]] = {}

    def accept(self, keyname: dns.name.Name, time_signed: int, fudge: int, mac: bytes) -> bool:
        """Record a request signed at `time_signed` with `fudge` and `mac`; False for a
        replay, for one outside its window at this clock's now, or when the key holds too
        many. The window is checked again here, at the `now` that forgets the MACs whose
        window has passed: a request checked just before the second turned would else be
        taken in the next, its MAC forgotten as past its window (a replay let through)."""
        now = int(self.clock())
        if outside_window(time_signed, fudge, now):
            return False
        seen = self._seen.setdefault(keyname, {})
        for gone in [m for m, until in seen.items() if until < now]:
            del seen[gone]
        if mac in seen or len(seen) >= MAX_MACS_PER_KEY:
            return False
        seen[mac] = time_signed + honoured_fudge(fudge)
        return True

    def snapshot(self) -> list[dict[str, Any]]:
        """The MACs held, as plain data for a state file: a restarted server must still
        refuse their replay while their window lasts (§5.2.3)."""
        return [
            {"key": key.to_text(), "mac": base64.b64encode(mac).decode(), "until": until}
            for key, seen in self._seen.items()
            for mac, until in seen.items()
        ]

    def restore(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Hold again what `snapshot` gave, but for the MACs whose window has passed."""
        now = int(self.clock())
        for entry in entries:
            until = int(entry["until"])
            if until >= now:
                seen = self._seen.setdefault(dns.name.from_text(str(entry["key"])), {})
                seen[base64.b64decode(str(entry["mac"]))] = until

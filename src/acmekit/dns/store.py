"""The record store: what the DNS server knows and how a question is answered (no I/O).

Data is a map from owner name to RRsets of A, AAAA, CNAME, TXT and CAA; names compare
case-insensitively (RFC 1035 §2.3.3, RFC 4343). On top of the stored data the store
synthesizes, for every zone it is authoritative for, an SOA and an NS RRset at the apex
and an address for the NS host, so that propagation checks which look for the zone's SOA
(certbot's dns-rfc2136, lego) find it here.

Zones. With explicit zones (`--zone`), a name belongs to the deepest zone that contains
it; names outside every zone are REFUSED. Without zones the store is authoritative for
every name and a name's zone is made of its last two labels (`_acme-challenge.a.x.test`
is in `x.test`, `test` is its own zone). That is predictable, makes an SOA query for any
test name answer like a real delegation would, and keeps names such as `a.co.uk` in a
zone that a test can still update; real deployments name their zones.

Resolution (RFC 1034 §4.3.2, RFC 4592 for wildcards, RFC 8020 for empty non-terminals):
exact match first; a name without data but with descendants exists (NODATA, and it
blocks wildcards: while `_acme-challenge.x` exists, `*.` no longer answers for it), as
does a name with synthesized data only (the apex, the NS host: RFC 4592 §2.2);
otherwise `*.<closest encloser>` is used if present. A CNAME is followed inside our own
zones, up to a small bound, stopping at loops. A name with no data is answered with the
default A/AAAA when one is set (then every name exists, as with Pebble's challtestsrv);
otherwise it is NXDOMAIN. Negative answers carry the zone's SOA in the authority section
(RFC 2308 §3).

Mutations bump the SOA serial and call the `on_change` observers, which is where the
server's edge persists state and sends NOTIFY; the store itself never touches a file.
Every mutation is a list of `Change`s (a record added or deleted), applied at once under
one new serial and kept in a bounded journal of `Delta`s, from which an IXFR (RFC 1995)
is answered. With a `writer` set (a store shared by several processes, see
`acmekit.dns.shared`), a mutation is handed to it instead of applied here: the shared
store numbers it and every process applies it with `apply`, in serial order.

Beside the records the store keeps `wire`, the same data in wire form (a `WireIndex`),
kept up to date by every change, so that `acmekit.dns.fastpath` answers a common
question without building a dnspython object.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TXT
import dns.rrset

from acmekit.protocol.problems import malformed

IN = dns.rdataclass.IN
# An authoritative answer chases CNAMEs only inside the zones served here (RFC 1034
# §4.3.2 step 3a); resolvers and the CA chase further on their own. Same limit as theirs.
MAX_CNAME_CHAIN = 8
NS_LABEL = "ns1"
NS_WIRE_LABEL = b"\x03" + NS_LABEL.encode()
HOSTMASTER_LABEL = "hostmaster"
# The SOA's refresh, retry and expire (RFC 1035 §3.3.13): refresh 60 s and retry 10 s,
# so a secondary that missed a NOTIFY still catches up within a minute.
SOA_TIMERS = (60, 10, 600)


T = TypeVar("T")


class Transactor(Protocol):
    """What decides and writes a shared store's change in one transaction."""

    def transact(self, decide: Callable[[], tuple[T, list[Change]]]) -> T: ...


class RecordType(StrEnum):
    """The record types the store holds; values are their presentation names."""

    A = "A"
    AAAA = "AAAA"
    CNAME = "CNAME"
    TXT = "TXT"
    CAA = "CAA"

    @property
    def rdtype(self) -> dns.rdatatype.RdataType:
        return dns.rdatatype.from_text(self.value)


STORED_TYPES = frozenset(t.rdtype for t in RecordType)
RRsets = dict[dns.rdatatype.RdataType, list[dns.rdata.Rdata]]
JOURNAL_SIZE = 1000  # deltas kept for IXFR; an older serial gets the whole zone
# The records at one name, as an answer renders them, must fit in one DNS message
# (65535 octets over TCP, RFC 1035 §4.2.2) with room left for the header, the longest
# question, an OPT record, a TSIG record and a chain of CNAMEs before them: else a query
# for them could only be answered truncated, even over TCP, and no zone transfer could
# carry the RRset whole. 29 TXT values of 2000 octets fit; 30 do not.
MAX_NAME_OCTETS = 60_000


@dataclass(frozen=True)
class Change:
    """One record added (`added` True) or deleted at `name`."""

    added: bool
    name: dns.name.Name
    rdata: dns.rdata.Rdata


@dataclass(frozen=True)
class Delta:
    """What one serial changed (RFC 1995 §4's difference sequence, before zone filtering)."""

    old_serial: int
    new_serial: int
    changes: tuple[Change, ...]


def next_serial(serial: int) -> int:
    """The serial after `serial` (RFC 1982 arithmetic; 0 is skipped)."""
    return (serial + 1) & 0xFFFFFFFF or 1


@dataclass(frozen=True)
class Resolution:
    """The answer to one question, ready to be put into a response."""

    rcode: dns.rcode.Rcode
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()
    authoritative: bool = True


def parse_name(text: str | dns.name.Name) -> dns.name.Name:
    """An absolute name from text; a peer's bad name raises a malformed problem."""
    if isinstance(text, dns.name.Name):
        return text if text.is_absolute() else text.concatenate(dns.name.root)
    if not text or not text.strip():
        raise malformed("empty DNS name")
    if not text.isascii():
        # dnspython maps text through IDNA (UTS #46) first: a fullwidth e (U+FF45) became
        # 'e', the Kelvin sign (U+212A) 'k' and the long s (U+017F) 's', so one owner had
        # several spellings. RFC 5890 §2.3.2.1: an IDN label is written as its A-label.
        raise malformed(f"bad DNS name {text!r}: not ASCII (give an IDN in its xn-- form)")
    try:
        return dns.name.from_text(text.strip())
    except (dns.exception.DNSException, UnicodeError) as exc:
        raise malformed(f"bad DNS name {text!r}: {exc}") from None


def _ip(text: str, version: int) -> str:
    # No zone index (RFC 4007 §11): ipaddress takes "fe80::1%" and any text after it,
    # which no AAAA record holds (dnspython then raised past the malformed problem).
    if "%" in text:
        raise malformed(f"bad IPv{version} address {text!r}: a zone index is not an address")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise malformed(f"bad IPv{version} address {text!r}") from None
    if addr.version != version:
        raise malformed(f"not an IPv{version} address: {text!r}")
    return str(addr)


def make_rdata(rtype: RecordType, value: str) -> dns.rdata.Rdata:
    """One record's data from its presentation form (TXT takes the raw string)."""
    if rtype is RecordType.TXT:
        if len(value.encode()) > 255 * 8:
            raise malformed("TXT value too long")
        chunks = [value.encode()[i : i + 255] for i in range(0, len(value.encode()), 255)]
        return dns.rdtypes.ANY.TXT.TXT(IN, rtype.rdtype, chunks or [b""])
    if rtype is RecordType.A:
        return dns.rdata.from_text(IN, rtype.rdtype, _ip(value, 4))
    if rtype is RecordType.AAAA:
        return dns.rdata.from_text(IN, rtype.rdtype, _ip(value, 6))
    if rtype is RecordType.CNAME:
        return dns.rdata.from_text(IN, rtype.rdtype, parse_name(value).to_text())
    try:
        return dns.rdata.from_text(IN, rtype.rdtype, value)
    except (dns.exception.DNSException, ValueError) as exc:
        raise malformed(f"bad {rtype} record {value!r}: {exc}") from None


def caa_rdata(tag: str, value: str, flags: int = 0) -> dns.rdata.Rdata:
    """A CAA record (RFC 8659): tag is alphanumeric, value is free text."""
    if not tag.isascii() or not tag.isalnum() or len(tag) > 255:
        raise malformed(f"bad CAA tag {tag!r}")
    if len(value.encode()) > 1024:
        raise malformed("CAA value too long")
    wire = bytes([flags & 0xFF, len(tag)]) + tag.encode() + value.encode()
    return dns.rdata.from_wire(IN, dns.rdatatype.CAA, wire, 0, len(wire))


def answer_octets(rrsets: Mapping[Any, Iterable[dns.rdata.Rdata]]) -> int:
    """What the records take in an answer whose owner is a compression pointer: 2 octets
    of owner, 10 of type, class, TTL and length, then the RDATA (RFC 1035 §4.1.3)."""
    total = 0
    for rdatas in rrsets.values():
        for rdata in rdatas:
            body = rdata.to_wire()
            assert body is not None
            total += 12 + len(body)
    return total


def txt_value(rdata: dns.rdata.Rdata) -> str:
    """The string a TXT record carries (its character-strings joined)."""
    assert isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
    return b"".join(rdata.strings).decode(errors="replace")


def implicit_zone(name: dns.name.Name) -> dns.name.Name:
    """Without configured zones, a name's zone is made of its last two labels."""
    return dns.name.Name(name.labels[-3:])


def wire_key(name: dns.name.Name) -> bytes:
    """A name's uncompressed wire form in lower case: names compare case-insensitively
    (RFC 4343 §3), and a length octet (at most 63) is never an upper-case letter."""
    wire = name.to_wire()
    assert wire is not None
    return wire.lower()


def label_starts(key: bytes) -> list[int]:
    """Where each label of the wire name `key` starts, the root's last: the name `i`
    labels up from `key` is `key[label_starts(key)[i]:]`."""
    starts = [0]
    while key[starts[-1]]:
        starts.append(starts[-1] + key[starts[-1]] + 1)
    return starts


def wire_parents(key: bytes) -> Iterator[bytes]:
    """The wire forms of a name's ancestors, nearest first, down to the root."""
    i = 0
    while key[i]:
        i += key[i] + 1
        yield key[i:]


@dataclass(frozen=True)
class WireRRset:
    """One stored RRset rendered as answer records: `count` records, each owned by a
    compression pointer to offset 12, the question's name (RFC 1035 §4.1.4)."""

    count: int
    records: bytes


class WireIndex:
    """The store's data keyed by `wire_key`: RRsets pre-rendered per name and type, and
    how many stored names lie below each name (its empty non-terminals, RFC 8020)."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.rrsets: dict[bytes, dict[int, WireRRset]] = {}
        self.above: Counter[bytes] = Counter()

    def render(self, rtype: int, rdatas: list[dns.rdata.Rdata]) -> WireRRset:
        head = b"\xc0\x0c" + struct.pack("!HHI", rtype, IN, self.ttl)
        parts = []
        for rdata in rdatas:
            body = rdata.to_wire()
            assert body is not None
            parts.append(head + struct.pack("!H", len(body)) + body)
        return WireRRset(len(parts), b"".join(parts))

    def put(self, name: dns.name.Name, rrsets: RRsets | None) -> None:
        """Render `name`'s RRsets again after a change (None: it has no data now)."""
        key = wire_key(name)
        had = key in self.rrsets
        rendered = {int(t): self.render(t, rds) for t, rds in (rrsets or {}).items() if rds}
        if rendered:
            self.rrsets[key] = rendered
            if not had:
                self.above.update(wire_parents(key))
        elif had:
            del self.rrsets[key]
            for akey in wire_parents(key):
                self.above[akey] -= 1
                if not self.above[akey]:
                    del self.above[akey]


class RecordStore:
    """Records, zones and defaults, with the resolution rules. Not thread-safe: one loop."""

    def __init__(
        self,
        zones: Iterable[str | dns.name.Name] = (),
        *,
        default_ipv4: str | None = None,
        default_ipv6: str | None = None,
        ns_ipv4: str | None = "127.0.0.1",
        ns_ipv6: str | None = None,
        ttl: int = 0,
    ) -> None:
        self.zones = tuple(sorted({parse_name(z) for z in zones}, key=len, reverse=True))
        self.default_ipv4 = _ip(default_ipv4, 4) if default_ipv4 else None
        self.default_ipv6 = _ip(default_ipv6, 6) if default_ipv6 else None
        self.ns_ipv4 = _ip(ns_ipv4, 4) if ns_ipv4 else None
        self.ns_ipv6 = _ip(ns_ipv6, 6) if ns_ipv6 else None
        self.ttl = ttl
        self.serial = 1
        self.generation = 0  # grows on every change; lets callers cache answers safely
        self.on_change: list[Callable[[], None]] = []
        self.on_delta: list[Callable[[Delta], None]] = []
        self.journal: deque[Delta] = deque(maxlen=JOURNAL_SIZE)
        # set for a shared store: takes a mutation's changes instead of applying them here
        self.writer: Callable[[list[Change]], None] | None = None
        # set for a shared store: decides and writes a change in one transaction
        self.transactor: Transactor | None = None
        # A shared store's catch-up: run before a write is decided, so that it is decided
        # on what the other processes wrote, not on a copy up to a poll interval old.
        self.refresh: Callable[[], None] | None = None
        self._data: dict[dns.name.Name, RRsets] = {}
        # The wire index also counts how many stored names lie below each name (the
        # empty non-terminals, `WireIndex.above`), kept incrementally so that a change
        # costs the depth of one name, not the whole store.
        self.wire = WireIndex(ttl)
        self.zone_keys = frozenset(wire_key(z) for z in self.zones)
        # The names above a served zone's apex inside another served zone exist: the
        # parent zone holds the child's cut there (RFC 1034 §4.2.1), so the names between
        # are empty non-terminals, not NXDOMAIN (which would deny the child zone below
        # them, RFC 8020) nor a wildcard's names (RFC 4592 §2.2.2).
        self.cut_parents = frozenset(
            parent for z in self.zone_keys for parent in wire_parents(z) if len(parent) > 1
        )

    # ----- zones -----

    def zone_of(self, name: dns.name.Name) -> dns.name.Name | None:
        """The zone `name` belongs to, or None if we are not authoritative for it."""
        if not self.zones:
            return implicit_zone(name)
        for zone in self.zones:
            if name.is_subdomain(zone):
                return zone
        return None

    def served(self, name: dns.name.Name) -> dns.name.Name:
        """`name`, if records may be published there through the API: inside a zone given
        with `--zone` or, without zones, below a top-level domain. Records at the root or
        a TLD would answer for names no one delegated to this server, and a large set
        there turns every short query into a long answer (amplification)."""
        zone = self.zone_of(name)
        if zone is None:
            zones = ", ".join(z.to_text() for z in self.zones)
            raise malformed(f"{name} is outside the zones this server serves ({zones})")
        if not self.zones and len(zone.labels) < 3:
            raise malformed(f"{name} is the root or a top-level domain; name a domain below one")
        return name

    def is_apex(self, name: dns.name.Name) -> bool:
        return self.zone_of(name) == name

    def ns_host(self, zone: dns.name.Name) -> dns.name.Name:
        return dns.name.Name((NS_LABEL.encode(), *zone.labels))

    def soa_rrset(self, zone: dns.name.Name, serial: int | None = None) -> dns.rrset.RRset:
        """The zone's SOA, with the current serial or `serial`; its minimum (the negative
        caching TTL, RFC 2308 §4) is the records' TTL."""
        hostmaster = dns.name.Name((HOSTMASTER_LABEL.encode(), *zone.labels))
        serial = self.serial if serial is None else serial
        refresh, retry, expire = SOA_TIMERS
        text = f"{self.ns_host(zone)} {hostmaster} {serial} {refresh} {retry} {expire} {self.ttl}"
        soa = dns.rdata.from_text(IN, dns.rdatatype.SOA, text)
        return dns.rrset.from_rdata(zone, self.ttl, soa)

    # ----- reading -----

    def rdatas(self, name: dns.name.Name, rtype: dns.rdatatype.RdataType) -> list[dns.rdata.Rdata]:
        """Stored records of one type at a name (no synthesis)."""
        return list(self._data.get(name, {}).get(rtype, ()))

    def types_at(self, name: dns.name.Name) -> list[dns.rdatatype.RdataType]:
        """The types stored at a name (no synthesis)."""
        return list(self._data.get(name, {}))

    def records_at(
        self, name: dns.name.Name, rtype: dns.rdatatype.RdataType
    ) -> list[dns.rdata.Rdata]:
        """The records of one type the zone holds at `name`: stored or synthesized (the
        SOA, the NS and the NS host's address win, as in answers), without wildcards or
        defaults: what RFC 2136 §3.2's prerequisites compare."""
        zone = self.zone_of(name)
        synthesized = self._synthesized(name, zone) if zone is not None else {}
        return list(synthesized.get(rtype, ())) or self.rdatas(name, rtype)

    def has_data(self, name: dns.name.Name) -> bool:
        """Does `name` own records, stored or synthesized (RFC 2136 §2.4.4 "in use")?"""
        return bool(self._data.get(name)) or self.is_apex(name) or self._is_ns_host(name)

    def names(self) -> list[dns.name.Name]:
        return list(self._data)

    def _is_ns_host(self, name: dns.name.Name) -> bool:
        """Is `name` its zone's NS host, owning a synthesized address?"""
        if not (self.ns_ipv4 or self.ns_ipv6) or len(name) < 2:
            return False
        if name.labels[0].lower() != NS_LABEL.encode():
            return False
        parent = name.parent()
        return self.zone_of(name) == parent

    def _exists(self, name: dns.name.Name) -> bool:
        # A synthesized name exists like a stored one: no wildcard answers for it or
        # below it (RFC 4592 §2.2, its closest encloser is itself, §3.3.1).
        key = wire_key(name)
        return (
            key in self.wire.rrsets
            or key in self.wire.above
            or key in self.cut_parents
            or self.is_apex(name)
            or self._is_ns_host(name)
        )

    def _wildcard(self, name: dns.name.Name, zone: dns.name.Name) -> RRsets | None:
        """RFC 4592: the RRsets of `*.<closest encloser>`, if the name itself is absent;
        None when that source of synthesis does not exist either. One that exists with no
        records (an empty non-terminal, as `*.x` is when only `a.*.x` is stored) answers
        NODATA, not NXDOMAIN (§4.2): hence {}."""
        key = wire_key(name)
        starts = label_starts(key)
        encloser = self._closest_encloser(key, starts, len(name) - len(zone))
        source_key = b"\x01*" + key[starts[encloser] :]
        if source_key not in self.wire.rrsets:
            return {} if self._wire_key_exists(source_key) else None
        source = dns.name.Name((b"*", *name.labels[encloser:]))
        return dict(self._data.get(source, {}))

    def _wire_key_exists(self, key: bytes) -> bool:
        """Does the name `key`, no NS host, exist: data, data below it, a zone's apex or
        a name above one (`cut_parents`)?"""
        index = self.wire
        return (
            key in index.rrsets
            or key in index.above
            or key in self.cut_parents
            or (key in self.zone_keys)
        )

    def _closest_encloser(self, key: bytes, starts: list[int], zone: int) -> int:
        """How many labels of `key` (absent from the store, `zone` labels below its zone's
        apex) to drop for its closest encloser (RFC 4592 §3.3.1): its deepest ancestor
        that exists (`_exists`), the apex at the latest.

        Existence is closed upwards: the wire index holds every ancestor of a stored name
        (`WireIndex.above`), `cut_parents` every ancestor of a served zone's apex, and
        the NS host's only ancestors are the apex and above it.
        So the ancestors exist from the apex down to the closest encloser and not below,
        and a binary search finds it with O(log n) lookups of wire keys. Walking up one
        ancestor at a time built and hashed a Name of up to n labels for each of n
        ancestors: O(n²) steps in Python for a name of n labels."""
        if zone < 1:
            return 0
        low, high = 1, zone  # the apex, `zone` labels up, exists
        while low < high:
            middle = (low + high) // 2
            if self._wire_exists(key, starts, middle, zone):
                high = middle
            else:
                low = middle + 1
        return low

    def _wire_exists(self, key: bytes, starts: list[int], up: int, zone: int) -> bool:
        """Does the ancestor `up` labels above `key`, below its zone's apex, exist?"""
        ancestor = key[starts[up] :]
        if self._wire_key_exists(ancestor):
            return True
        # the NS host (`_is_ns_host`), one label below the apex
        label = key[starts[up] : starts[up + 1]]
        return up == zone - 1 and label == NS_WIRE_LABEL and bool(self.ns_ipv4 or self.ns_ipv6)

    def _synthesized(self, name: dns.name.Name, zone: dns.name.Name) -> RRsets:
        found: RRsets = {}
        if name == zone:
            found[dns.rdatatype.SOA] = list(self.soa_rrset(zone))
            ns = dns.rdata.from_text(IN, dns.rdatatype.NS, self.ns_host(zone).to_text())
            found[dns.rdatatype.NS] = [ns]
        if name == self.ns_host(zone):
            if self.ns_ipv4:
                found[dns.rdatatype.A] = [make_rdata(RecordType.A, self.ns_ipv4)]
            if self.ns_ipv6:
                found[dns.rdatatype.AAAA] = [make_rdata(RecordType.AAAA, self.ns_ipv6)]
        return found

    def _defaults(self, found: RRsets) -> None:
        if dns.rdatatype.CNAME in found:
            return
        if self.default_ipv4 and dns.rdatatype.A not in found:
            found[dns.rdatatype.A] = [make_rdata(RecordType.A, self.default_ipv4)]
        if self.default_ipv6 and dns.rdatatype.AAAA not in found:
            found[dns.rdatatype.AAAA] = [make_rdata(RecordType.AAAA, self.default_ipv6)]

    def node(self, name: dns.name.Name, zone: dns.name.Name) -> RRsets | None:
        """Everything `name` holds (stored, synthesized, wildcard, default), or None."""
        found = self._synthesized(name, zone)
        stored = self._data.get(name)
        exists = self._exists(name)
        if stored:
            found.update({k: list(v) for k, v in stored.items() if k not in found})
        elif not exists:
            wildcard = self._wildcard(name, zone)
            exists = wildcard is not None
            found.update(wildcard or {})
        self._defaults(found)
        if found or exists:
            return found
        return None

    def resolve(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> Resolution:
        """Answer one question: rcode, answer, authority, additional (RFC 1034 §4.3.2)."""
        zone = self.zone_of(qname)
        if zone is None:
            return Resolution(dns.rcode.REFUSED, authoritative=False)
        answer: list[dns.rrset.RRset] = []
        seen: set[dns.name.Name] = set()
        name = qname
        while True:
            seen.add(name)
            found = self.node(name, zone)
            if found is None:
                return Resolution(dns.rcode.NXDOMAIN, tuple(answer), (self.soa_rrset(zone),))
            target = self._cname_target(found, qtype)
            if target is None:
                return self._final(name, zone, qtype, found, answer)
            answer.append(self._rrset(name, found[dns.rdatatype.CNAME]))
            next_zone = self.zone_of(target)
            if next_zone is None or target in seen or len(seen) > MAX_CNAME_CHAIN:
                return Resolution(dns.rcode.NOERROR, tuple(answer))
            name, zone = target, next_zone

    def _cname_target(self, found: RRsets, qtype: dns.rdatatype.RdataType) -> dns.name.Name | None:
        cname = found.get(dns.rdatatype.CNAME)
        if not cname or qtype in (dns.rdatatype.CNAME, dns.rdatatype.ANY):
            return None
        target = cname[0]
        assert isinstance(target, dns.rdtypes.ANY.CNAME.CNAME)
        return target.target

    def _final(
        self,
        name: dns.name.Name,
        zone: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        found: RRsets,
        answer: list[dns.rrset.RRset],
    ) -> Resolution:
        if qtype == dns.rdatatype.ANY:
            matched = [self._rrset(name, rds) for rds in found.values()]
        elif qtype in found:
            matched = [self._rrset(name, found[qtype])]
        else:
            matched = []
        if not matched:
            return Resolution(dns.rcode.NOERROR, tuple(answer), (self.soa_rrset(zone),))
        additional: tuple[dns.rrset.RRset, ...] = ()
        if qtype == dns.rdatatype.NS:
            additional = self._glue(zone)
        return Resolution(dns.rcode.NOERROR, (*answer, *matched), (), additional)

    def _glue(self, zone: dns.name.Name) -> tuple[dns.rrset.RRset, ...]:
        host = self.ns_host(zone)
        found = self.node(host, zone) or {}
        kinds = (dns.rdatatype.A, dns.rdatatype.AAAA)
        return tuple(self._rrset(host, found[k]) for k in kinds if k in found)

    def _rrset(self, name: dns.name.Name, rdatas: list[dns.rdata.Rdata]) -> dns.rrset.RRset:
        return dns.rrset.from_rdata_list(name, self.ttl, rdatas)

    # ----- writing -----

    def _reindex(self) -> None:
        self.wire = WireIndex(self.ttl)
        for name, rrsets in self._data.items():
            self.wire.put(name, rrsets)

    def _refresh(self) -> None:
        if self.refresh is not None:
            self.refresh()

    def transact(self, decide: Callable[[], tuple[T, list[Change]]]) -> T:
        """Run `decide` on this store brought up to date and commit the changes it
        names, as one step: a shared store runs both under the zone's lock in one
        transaction, so that no other process writes in between and what `decide`
        checked still holds (RFC 2136 §3.7); here one call is one step already. The
        caller checked room. `decide`'s first value is returned."""
        if self.transactor is not None:
            return self.transactor.transact(decide)
        result, changes = decide()
        self._commit(changes)
        return result

    def _commit(self, changes: list[Change]) -> bool:
        """Apply `changes` under the next serial, or hand them to the shared store's
        writer; False when there are none."""
        if not changes:
            return False
        if self.writer is not None:
            self.writer(changes)
        else:
            self.apply(changes, next_serial(self.serial))
        return True

    def apply(self, changes: Iterable[Change], serial: int) -> None:
        """Apply `changes` as serial `serial` (a shared store's, or the next one)."""
        done = tuple(changes)
        for change in done:
            if change.added:
                self._insert(change.name, change.rdata)
            else:
                self._delete(change.name, change.rdata)
        delta = Delta(self.serial, serial, done)
        self.serial = serial
        self.journal.append(delta)
        self.generation += 1
        for watcher in self.on_delta:
            watcher(delta)
        for observer in self.on_change:
            observer()

    def _insert(self, name: dns.name.Name, rdata: dns.rdata.Rdata) -> None:
        existing = self._data.setdefault(name, {}).setdefault(rdata.rdtype, [])
        if rdata not in existing:
            existing.append(rdata)
            self.wire.put(name, self._data[name])

    def _delete(self, name: dns.name.Name, rdata: dns.rdata.Rdata) -> None:
        existing = self._data.get(name, {}).get(rdata.rdtype, [])
        if rdata in existing:
            existing.remove(rdata)
        self._prune(name)
        self.wire.put(name, self._data.get(name))

    def add(self, name: dns.name.Name, rdata: dns.rdata.Rdata) -> bool:
        """Add one record (a duplicate is a no-op); a CNAME replaces the previous one."""
        if rdata.rdtype not in STORED_TYPES:
            raise malformed(f"record type {rdata.rdtype.name} is not served")
        self._refresh()
        existing = self.rdatas(name, rdata.rdtype)
        if rdata in existing:
            return False
        changes = []
        if rdata.rdtype == dns.rdatatype.CNAME:
            changes = [Change(False, name, old) for old in existing]
            existing = []
        self.check_room(name, rdata.rdtype, [*existing, rdata])
        return self._commit([*changes, Change(True, name, rdata)])

    def check_room(
        self, name: dns.name.Name, rtype: dns.rdatatype.RdataType, rdatas: list[dns.rdata.Rdata]
    ) -> None:
        """Raise a malformed problem if `name` holding `rdatas` as its `rtype` records
        would not fit in one DNS message (MAX_NAME_OCTETS)."""
        octets = answer_octets({**self._data.get(name, {}), rtype: rdatas})
        if octets > MAX_NAME_OCTETS:
            raise malformed(
                f"the records at {name} would take {octets} octets in an answer, more than "
                f"the {MAX_NAME_OCTETS} one DNS message carries; clear some first"
            )

    def remove(self, name: dns.name.Name, rdata: dns.rdata.Rdata) -> bool:
        """Remove one record; True if it was there."""
        self._refresh()
        if rdata not in self.rdatas(name, rdata.rdtype):
            return False
        return self._commit([Change(False, name, rdata)])

    def clear(self, name: dns.name.Name, rtype: dns.rdatatype.RdataType) -> bool:
        """Remove the RRset of one type at a name; True if there was one."""
        self._refresh()
        return self._commit([Change(False, name, rd) for rd in self.rdatas(name, rtype)])

    def keep_latest(self, name: dns.name.Name, rtype: dns.rdatatype.RdataType, keep: int) -> None:
        """Drop all but the `keep` most recently added records of a type (acme-dns's rule)."""
        self._refresh()
        existing = self.rdatas(name, rtype)
        if len(existing) > keep:
            self._commit([Change(False, name, rd) for rd in existing[: len(existing) - keep]])

    def _prune(self, name: dns.name.Name) -> None:
        rrsets = self._data.get(name)
        if rrsets is None:
            return
        for rtype in [t for t, rds in rrsets.items() if not rds]:
            del rrsets[rtype]
        if not rrsets:
            del self._data[name]

    def set_default(self, version: int, address: str | None) -> None:
        """Set (or, with None or "", clear) the default A (4) or AAAA (6) address."""
        value = _ip(address, version) if address else None
        if version == 4:
            self.default_ipv4 = value
        else:
            self.default_ipv6 = value
        if self.writer is None:
            self.apply((), next_serial(self.serial))
        else:  # this process's setting only: the shared zone did not change
            self.generation += 1

    # ----- persistence (plain data; the edge writes it) -----

    def snapshot(self) -> dict[str, Any]:
        records = {
            name.to_text(): {
                dns.rdatatype.to_text(t): [rd.to_text() for rd in rds] for t, rds in rrsets.items()
            }
            for name, rrsets in self._data.items()
        }
        return {"serial": self.serial, "records": records}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Load what `snapshot` returned (replacing current data, without notifying)."""
        self._data = {}
        for name_text, rrsets in dict(snapshot.get("records", {})).items():
            name = parse_name(name_text)
            for type_text, values in rrsets.items():
                rtype = dns.rdatatype.from_text(type_text)
                rds = [dns.rdata.from_text(IN, rtype, v) for v in values]
                self._data.setdefault(name, {})[rtype] = rds
        self._reindex()
        self.generation += 1
        self.journal.clear()  # an IXFR from before this gets the whole zone
        self.serial = max(int(snapshot.get("serial", 1)), 1)

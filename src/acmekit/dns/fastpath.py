"""The query fast path: the common question answered from wire bytes, without dnspython.

dnspython's parse of a query and render of its response cost well over 100 µs of CPU,
ten times what BIND spends on a whole answer. Most questions an ACME challenge server
gets have one shape, and for it the answer is a splice of the query and of RRsets the
store keeps pre-rendered (`RecordStore.wire`):

- header: QR clear, opcode QUERY, no flag but RD, AD and CD; QDCOUNT 1, no answer or
  authority records, and either no additional record or one OPT (root owner, EDNS
  version 0, no extended RCODE, no options: RFC 6891 §6.1.2) and then nothing;
- question: an uncompressed name (labels of at most 63 octets, at most 255 in all) that
  is neither a zone's apex nor its name server host, class IN, type A, AAAA, TXT, CAA,
  NS or SOA;
- store: no default address, and the name's answer is data stored at the name itself,
  NODATA, or NXDOMAIN (no CNAME to chase, no wildcard to expand; the closest encloser
  may be the NS host, which exists with its synthesized address).

Its answer has AA set and RD copied, the question as the query spelled it, answer
records owned by a pointer to it (RFC 1035 §4.1.4), and for NODATA and NXDOMAIN the
zone's SOA in the authority section (RFC 2308 §3), its names compressed as dnspython
would, so that both paths give the same octets. With EDNS the response carries our OPT
(payload 1232, no DO: we do not sign). An answer larger than the requester's limit is
left to the general path, which truncates it (RFC 6891 §7, RFC 7766).

Anything else returns None, and the handler takes dnspython's general path, which has
every check and error (FORMERR, BADVERS, REFUSED, TSIG, UPDATE, transfers, truncation).
"""

from __future__ import annotations

import struct

from acmekit.dns.store import NS_WIRE_LABEL, SOA_TIMERS, RecordStore

HEADER_LEN = 12
PLAIN_UDP_LIMIT = 512
TCP_LIMIT = 65535
FAST_QTYPES = frozenset({1, 2, 6, 16, 28, 257})  # A, NS, SOA, TXT, AAAA, CAA
CNAME = 5
SOA = 6
NOERROR, NXDOMAIN = 0, 3
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00"
_HOSTMASTER_LABEL = b"\x0ahostmaster"
_TYPE_CLASS = struct.Struct("!HH")
_COUNTS = struct.Struct("!HHHH")
_SOA_HEAD = struct.Struct("!HHHIH")
_SOA_NUMBERS = struct.Struct("!IIIII")
_OPT_QUERY_HEAD = b"\x00\x00\x29"  # root owner, type OPT


def answer(store: RecordStore, wire: bytes, tcp: bool, udp_payload: int) -> bytes | None:
    """The response to the query `wire` (at least 12 octets, QR clear), or None when it
    is not of the common shape and the general path must answer."""
    if wire[2] & 0xFE or wire[3] & 0xCF or wire[4:10] != _ONE_QUESTION:
        return None
    if store.default_ipv4 or store.default_ipv6:
        return None  # every name exists: the general path synthesizes addresses
    question = _question(wire)
    if question is None:
        return None
    end, offsets, qtype = question
    limits = _limits(wire, end, udp_payload)
    if limits is None:
        return None
    limit, opt = limits
    key = wire[HEADER_LEN : end - 4].lower()
    zone = _zone(store, key, offsets)
    if zone is None:
        return None
    body = _resolve(store, key, offsets, zone, qtype)
    if body is None:
        return None
    rcode, count, records = body
    header = wire[:2] + bytes((0x84 | (wire[2] & 0x01), rcode))
    counts = _COUNTS.pack(1, count, 0 if count else 1, 1 if opt else 0)
    reply = header + counts + wire[HEADER_LEN:end] + records + opt
    if len(reply) > (TCP_LIMIT if tcp else limit):
        return None  # the general path sends it truncated, with TC set
    return reply


def _question(wire: bytes) -> tuple[int, list[int], int] | None:
    """(end of the question, label offsets in the name from its start, QTYPE) for a
    question with a plain name, class IN and a fast type."""
    offsets: list[int] = []
    i, n = HEADER_LEN, len(wire)
    while i < n:
        length = wire[i]
        if not length:
            break
        if length > 63:  # a compression pointer or an extended label type
            return None
        offsets.append(i - HEADER_LEN)
        i += length + 1
    else:
        return None
    end = i + 5
    if not offsets or end - 4 - HEADER_LEN > 255 or end > n:
        return None
    qtype, qclass = _TYPE_CLASS.unpack_from(wire, i + 1)
    if qclass != 1 or qtype not in FAST_QTYPES:
        return None
    return end, offsets, qtype


def _limits(wire: bytes, end: int, udp_payload: int) -> tuple[int, bytes] | None:
    """(the UDP size limit, our OPT record or b"") for a query that ends at `end` or
    carries one plain OPT record there."""
    if wire[10:12] == b"\x00\x00":
        return (PLAIN_UDP_LIMIT, b"") if len(wire) == end else None
    if (
        wire[10:12] != b"\x00\x01"
        or len(wire) != end + 11
        or wire[end : end + 3] != _OPT_QUERY_HEAD
        or wire[end + 5 : end + 7] != b"\x00\x00"  # extended RCODE and version 0
        or wire[end + 9 : end + 11] != b"\x00\x00"  # no options
    ):
        return None
    payload = wire[end + 3] << 8 | wire[end + 4]
    opt = _OPT_QUERY_HEAD + udp_payload.to_bytes(2, "big") + bytes(6)
    return max(PLAIN_UDP_LIMIT, min(payload, udp_payload)), opt


def _zone(store: RecordStore, key: bytes, offsets: list[int]) -> int | None:
    """Where in `key` the name's zone starts, for a name strictly inside a zone and not
    its name server host; None for the rest (apex, NS host, outside every zone)."""
    zones = store.zone_keys
    if zones:
        for offset in offsets:
            if key[offset:] in zones:
                break
        else:
            return None  # outside our zones (REFUSED) or in the root zone
    elif len(offsets) > 2:
        offset = offsets[-2]  # the implicit zone: the last two labels
    else:
        return None
    if not offset or (offset == 4 and key[:4] == NS_WIRE_LABEL):
        return None
    return offset


def _resolve(
    store: RecordStore, key: bytes, offsets: list[int], zone: int, qtype: int
) -> tuple[int, int, bytes] | None:
    """(RCODE, answer count, answer or authority records) for the name `key`."""
    index = store.wire
    rrsets = index.rrsets.get(key)
    if rrsets is not None:
        if CNAME in rrsets:
            return None  # chased by the general path (RFC 1034 §4.3.2)
        found = rrsets.get(qtype)
        if found is not None:
            return NOERROR, found.count, found.records
        return NOERROR, 0, _soa(store, key, offsets, zone)
    cuts, zones = store.cut_parents, store.zone_keys
    if key in index.above or key in cuts:  # an empty non-terminal: NODATA (RFC 8020)
        return NOERROR, 0, _soa(store, key, offsets, zone)
    suffix = key
    for offset in offsets[1:]:  # the closest encloser (RFC 4592 §3.3.1)
        suffix = key[offset:]
        if offset == zone or suffix in index.rrsets or suffix in index.above or suffix in cuts:
            break
        if _is_ns_host(store, key, offset, zone):
            break  # it exists with its synthesized address (RecordStore._exists)
    source = b"\x01*" + suffix
    if source in index.rrsets or source in index.above or source in cuts or source in zones:
        return None  # a wildcard answers, or NODATA (RFC 4592 §4.2): the general path
    return NXDOMAIN, 0, _soa(store, key, offsets, zone)


def _is_ns_host(store: RecordStore, key: bytes, offset: int, zone: int) -> bool:
    """Is the suffix of `key` at `offset` the zone's NS host, with an address?"""
    return (
        offset + len(NS_WIRE_LABEL) == zone
        and key[offset:zone] == NS_WIRE_LABEL
        and bool(store.ns_ipv4 or store.ns_ipv6)
    )


def _soa(store: RecordStore, key: bytes, offsets: list[int], zone: int) -> bytes:
    """The zone's SOA record, compressed against the question's name as dnspython does:
    its owner and each of its names point into the question where the question holds
    them (`ns1.<zone>` or `hostmaster.<zone>` may be the question's own suffixes)."""
    zone_ptr = (0xC000 | (HEADER_LEN + zone)).to_bytes(2, "big")
    mname = NS_WIRE_LABEL + zone_ptr
    start = zone - len(NS_WIRE_LABEL)
    if start in offsets and key[start:zone] == NS_WIRE_LABEL:
        mname = (0xC000 | (HEADER_LEN + start)).to_bytes(2, "big")
    rname = _HOSTMASTER_LABEL + zone_ptr
    start = zone - len(_HOSTMASTER_LABEL)
    if start in offsets and key[start:zone] == _HOSTMASTER_LABEL:
        rname = (0xC000 | (HEADER_LEN + start)).to_bytes(2, "big")
    refresh, retry, expire = SOA_TIMERS
    numbers = _SOA_NUMBERS.pack(store.serial, refresh, retry, expire, store.ttl)
    rdata = mname + rname + numbers
    head = _SOA_HEAD.pack(0xC000 | (HEADER_LEN + zone), SOA, 1, store.ttl, len(rdata))
    return head + rdata

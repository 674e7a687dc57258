"""Zone transfers out of the record store (no I/O): AXFR (RFC 5936) and IXFR (RFC 1995).

A zone's contents are what a query would find there without defaults: the synthesized
SOA, NS and NS host address, then every stored RRset whose name belongs to the zone (not
to a deeper zone of ours). The `--default-ipv4/6` answers are a property of this server,
not records, and are not transferred.

AXFR: SOA, the other records, SOA again (RFC 5936 §2.2), in as many messages as needed:
each takes records while their uncompressed size fits under 64 KiB, less the header, the
question and room for the TSIG record, so a zone of large TXT values is cut into more
messages rather than failing (one record always fits: the store bounds a name's data).
IXFR: a client at the current serial (or ahead of it) gets the SOA alone (RFC 1995 §2);
one whose serial the journal reaches gets the difference sequence: the new SOA, then for
each serial the old SOA, the deleted records, the new SOA and the added records, then the
new SOA (§4); otherwise the whole zone, AXFR style, which §4 allows.

Transfers happen over TCP only (UDP gets REFUSED from the handler) and only for a client
that signed its request with a key named in `--allow-transfer` (RFC 5936 §6, RFC 8945);
each message of a multi-message answer is signed, the later ones chained to the earlier
ones' MACs (RFC 8945 §5.3.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset

from acmekit.dns.fastpath import TCP_LIMIT
from acmekit.dns.store import Change, Delta, RecordStore

HEADER_LEN = 12
# the TSIG record each message is signed with (RFC 8945 §4.2): owner and algorithm names
# (at most 255 octets each), a 512-bit MAC at most and the fixed fields, rounded up
TSIG_ROOM = 1024
TRANSFER_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})


def zone_rrsets(store: RecordStore, zone: dns.name.Name) -> list[dns.rrset.RRset]:
    """The zone's RRsets, SOA first (RFC 5936 §2.2), the rest in a stable order."""
    host = store.ns_host(zone)
    ns = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.NS, host.to_text())
    out = [store.soa_rrset(zone), dns.rrset.from_rdata(zone, store.ttl, ns)]
    # the NS host's address, as a query finds it (synthesized ones win over stored ones)
    addresses = ((dns.rdatatype.A, store.ns_ipv4), (dns.rdatatype.AAAA, store.ns_ipv6))
    synthesized = [t for t, a in addresses if a and store.zone_of(host) == zone]
    for rtype, address in addresses:
        if rtype in synthesized:
            rd = dns.rdata.from_text(dns.rdataclass.IN, rtype, str(address))
            out.append(dns.rrset.from_rdata(host, store.ttl, rd))
    for name in sorted(store.names()):
        if store.zone_of(name) != zone:
            continue
        for rtype in sorted(store.types_at(name)):
            if name == host and rtype in synthesized:
                continue
            out.append(dns.rrset.from_rdata_list(name, store.ttl, store.rdatas(name, rtype)))
    return out


def _records(
    changes: Iterable[Change], store: RecordStore, zone: dns.name.Name, *, added: bool
) -> list[dns.rrset.RRset]:
    return [
        dns.rrset.from_rdata(c.name, store.ttl, c.rdata)
        for c in changes
        if c.added == added and store.zone_of(c.name) == zone
    ]


def ixfr_rrsets(
    store: RecordStore, zone: dns.name.Name, client_serial: int
) -> list[dns.rrset.RRset] | None:
    """The IXFR answer's records for a client at `client_serial`, or None when the
    journal does not reach back to it (the caller sends the whole zone)."""
    current = store.soa_rrset(zone)
    if _serial_ge(client_serial, store.serial):
        return [current]
    deltas = _deltas_since(store.journal, client_serial)
    if deltas is None:
        return None
    out = [current]
    for delta in deltas:
        out.append(store.soa_rrset(zone, delta.old_serial))
        out.extend(_records(delta.changes, store, zone, added=False))
        out.append(store.soa_rrset(zone, delta.new_serial))
        out.extend(_records(delta.changes, store, zone, added=True))
    out.append(current)
    return out


def _deltas_since(journal: Sequence[Delta], serial: int) -> list[Delta] | None:
    for start, delta in enumerate(journal):
        if delta.old_serial == serial:
            chain = list(journal)[start:]
            # contiguous by construction; a gap (a restored snapshot) means no answer
            if all(a.new_serial == b.old_serial for a, b in pairwise(chain)):
                return chain
            return None
    return None


def _serial_ge(a: int, b: int) -> bool:
    """a >= b in RFC 1982 serial arithmetic."""
    return a == b or 0 < (a - b) % 2**32 < 2**31


def transfer_rrsets(
    store: RecordStore, query: dns.message.Message
) -> tuple[dns.rcode.Rcode, list[dns.rrset.RRset]]:
    """What to send for a transfer request: (rcode, records in order)."""
    question = query.question[0]
    zone = question.name
    if zone not in store.zones and not (not store.zones and store.zone_of(zone) == zone):
        return dns.rcode.NOTAUTH, []
    if question.rdtype == dns.rdatatype.IXFR:
        serial = _client_serial(query)
        if serial is None:
            return dns.rcode.FORMERR, []
        found = ixfr_rrsets(store, zone, serial)
        if found is not None:
            return dns.rcode.NOERROR, found
    full = zone_rrsets(store, zone)
    return dns.rcode.NOERROR, [*full, full[0]]


def _client_serial(query: dns.message.Message) -> int | None:
    """The serial in an IXFR request's authority SOA (RFC 1995 §3)."""
    for rrset in query.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            soa = rrset[0]
            assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
            return int(soa.serial)
    return None


def transfer_messages(
    store: RecordStore, query: dns.message.Message
) -> Iterator[dns.message.Message]:
    """The response messages to a transfer request; the caller signs them in order."""
    rcode, rrsets = transfer_rrsets(store, query)
    if rcode != dns.rcode.NOERROR or not rrsets:
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        yield response
        return
    records = [dns.rrset.from_rdata(r.name, r.ttl, rd) for r in rrsets for rd in r]
    question = query.question[0].name.to_wire()
    assert question is not None
    budget = TCP_LIMIT - HEADER_LEN - (len(question) + 4) - TSIG_ROOM
    for number, chunk in enumerate(_cut(records, budget)):
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if number:
            response.question = []  # only the first message repeats it (RFC 5936 §2.2.1)
        response.answer = chunk
        yield response


def _cut(records: list[dns.rrset.RRset], budget: int) -> Iterator[list[dns.rrset.RRset]]:
    """`records` (one record each) in runs whose uncompressed size is within `budget`:
    compression only makes a message smaller, so each run fits (RFC 5936 §2.2)."""
    chunk: list[dns.rrset.RRset] = []
    size = 0
    for record in records:
        owner = record.name.to_wire()
        rdata = record[0].to_wire()
        assert owner is not None and rdata is not None
        octets = len(owner) + 10 + len(rdata)  # type, class, TTL, RDLENGTH (RFC 1035 §4.1.3)
        if chunk and size + octets > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += octets
    if chunk:
        yield chunk

"""The store's answers, and the fast path's, against a reference written from the RFCs'
definitions alone, over random record sets, random writes and random questions.

The reference (RFC 1034 §4.3.2, RFC 4592, RFC 8020) walks names label by label and
compares labels case-insensitively for ASCII only (RFC 4343 §3): octets 0xC1 and 0xE1
are different labels, as are `a.b` (one label holding a dot) and `a`.`b`. A name
exists when it owns data, has a stored name below it, is a zone's apex or its NS host,
or lies above the apex of a zone served here (the parent zone holds the child's cut, so
the names between are empty non-terminals). A name that does not exist is answered from
`*.<closest encloser>` when that name exists: its records, or NODATA when it owns none
(an empty non-terminal wildcard, RFC 4592 §4.2); else NXDOMAIN.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acmekit.dns.handler import DnsHandler, Transport
from acmekit.dns.store import RecordStore, RecordType, WireIndex, make_rdata, txt_value

Labels = tuple[bytes, ...]  # leftmost first, without the root's

BASE: Labels = (b"x", b"test")
LABELS = [b"a", b"A", b"b", b"*", b"ns1", b"NS1", b"a.b", b"\xc1", b"\xe1", b"\x00", b"q"]
ZONINGS: dict[str, tuple[str, ...]] = {
    "one zone": ("x.test",),
    "nested zones": ("x.test", "b.a.x.test", "*.x.test"),
    "a zone two labels below another": ("x.test", "a.q.x.test"),
    "implicit zones": (),
}
VALUES = ["one", "two"]


def fold(label: bytes) -> bytes:
    """ASCII letters only in lower case (RFC 4343 §3)."""
    return bytes(c + 32 if 65 <= c <= 90 else c for c in label)


def key(name: Labels) -> Labels:
    return tuple(fold(label) for label in name)


def below(name: Labels, top: Labels) -> bool:
    """Is `name` `top` or a name under it?"""
    return len(name) >= len(top) and key(name[len(name) - len(top) :]) == key(top)


class Reference:
    """What the zone holds, as sets of TXT values per (folded) owner."""

    def __init__(self, zones: Iterable[str], ns: bool) -> None:
        self.zones = [tuple(z.encode().split(b".")) for z in zones]
        self.ns = ns
        self.data: dict[Labels, set[str]] = {}

    def zone_of(self, name: Labels) -> Labels | None:
        if not self.zones:
            return key(name[-2:])
        held = [z for z in self.zones if below(name, z)]
        return key(max(held, key=len)) if held else None

    def exists(self, name: Labels) -> bool:
        k = key(name)
        zone = self.zone_of(name)
        return (
            bool(self.data.get(k))
            or any(len(s) > len(k) and below(s, k) for s, v in self.data.items() if v)
            or k == zone
            or (self.ns and len(k) > 0 and k[0] == b"ns1" and zone == k[1:])
            or any(len(z) > len(k) and below(z, k) for z in self.zones)
        )

    def answer(self, name: Labels) -> tuple[int, set[str]]:
        """(RCODE, TXT values) for a TXT question."""
        if self.zone_of(name) is None:
            return dns.rcode.REFUSED, set()
        if self.exists(name):
            return dns.rcode.NOERROR, set(self.data.get(key(name), ()))
        zone = self.zone_of(name)
        assert zone is not None
        encloser = name[1:]
        while not self.exists(encloser):
            encloser = encloser[1:]
        source = (b"*", *encloser)
        if self.exists(source):  # RFC 4592 §3.3.1; NODATA when it owns no TXT (§4.2)
            return dns.rcode.NOERROR, set(self.data.get(key(source), ()))
        return dns.rcode.NXDOMAIN, set()


def to_name(labels: Labels) -> dns.name.Name:
    return dns.name.Name((*labels, b""))


names = st.lists(st.sampled_from(LABELS), max_size=4).map(lambda ls: (*ls, *BASE))
writes = st.lists(st.tuples(st.booleans(), names, st.sampled_from(VALUES)), min_size=1, max_size=25)


def index_rebuilt(store: RecordStore) -> tuple[object, dict[bytes, int]]:
    fresh = WireIndex(store.ttl)
    for name in store.names():
        fresh.put(name, {t: store.rdatas(name, t) for t in store.types_at(name)})
    return fresh.rrsets, dict(fresh.above)


def general_answer(store: RecordStore, name: Labels) -> tuple[int, set[str]]:
    res = store.resolve(to_name(name), dns.rdatatype.TXT)
    values = {txt_value(rd) for rrset in res.answer for rd in rrset}
    return res.rcode, values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(ZONINGS)),
    st.booleans(),
    writes,
    st.lists(names, min_size=1, max_size=20),
)
def test_answers_match_the_reference(
    zoning: str, ns: bool, changes: list[tuple[bool, Labels, str]], questions: list[Labels]
) -> None:
    store = RecordStore(ZONINGS[zoning], ns_ipv4="127.0.0.1" if ns else None)
    reference = Reference(ZONINGS[zoning], ns)
    fast = DnsHandler(store)
    general = DnsHandler(store, fast_path=False)
    for added, name, value in changes:
        rdata = make_rdata(RecordType.TXT, value)
        if added:
            store.add(to_name(name), rdata)
            reference.data.setdefault(key(name), set()).add(value)
        else:
            store.remove(to_name(name), rdata)
            reference.data.get(key(name), set()).discard(value)
    assert (store.wire.rrsets, dict(store.wire.above)) == index_rebuilt(store)
    for name in [*questions, *(n for _, n, _ in changes)]:
        assert general_answer(store, name) == reference.answer(name), to_name(name)
        for qtype, transport in itertools.product(("TXT", "A", "NS", "SOA"), Transport):
            wire = dns.message.make_query(to_name(name), qtype, use_edns=0).to_wire()
            got, want = fast.handle(wire, transport), general.handle(wire, transport)
            assert got is not None and want is not None
            assert dns.message.from_wire(got) == dns.message.from_wire(want), to_name(name)


def both_paths(store: RecordStore, name: str) -> list[dns.message.Message]:
    wire = dns.message.make_query(name, "TXT", use_edns=0).to_wire()
    replies = [DnsHandler(store, fast_path=f).handle(wire) for f in (True, False)]
    return [dns.message.from_wire(r) for r in replies if r is not None]


def test_names_above_a_child_zone_are_empty_non_terminals() -> None:
    """`q.x.test` lies between `x.test` and the served `a.q.x.test`: NODATA, not the
    wildcard's TXT nor NXDOMAIN (after which a resolver minimising its questions, RFC
    9156, never asks for the child zone's names)."""
    store = RecordStore(("x.test", "a.q.x.test"))
    store.add(dns.name.from_text("*.x.test"), make_rdata(RecordType.TXT, "wild"))
    for reply in both_paths(store, "q.x.test"):
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    for reply in both_paths(store, "other.x.test"):
        assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer) == 1


def test_an_empty_wildcard_answers_nodata() -> None:
    """Only `a.*.x.test` is stored: `*.x.test` exists, empty, and is the source of
    synthesis for `b.x.test`, which is NODATA (RFC 4592 §4.2)."""
    store = RecordStore(("x.test",))
    store.add(dns.name.from_text("a.*.x.test"), make_rdata(RecordType.TXT, "deep"))
    for reply in both_paths(store, "b.x.test"):
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    (first, second) = both_paths(store, "b.x.test")
    assert first == second

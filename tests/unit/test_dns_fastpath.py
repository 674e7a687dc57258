"""The query fast path gives the same octets as dnspython's general path, or declines.

Each case runs one query through a handler with the fast path and through one without
it (the general path, which parses and renders with dnspython) and compares the bytes;
dnspython shuffles the records of an RRset as it renders them (the fast path keeps the
stored order), so where the octets differ the messages must parse equal, RRsets compared
as sets, and be as long.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acmekit.dns import fastpath, limits
from acmekit.dns.handler import DnsHandler, Transport
from acmekit.dns.store import (
    RecordStore,
    RecordType,
    WireIndex,
    caa_rdata,
    make_rdata,
    parse_name,
    wire_key,
)

RECORDS = [
    ("_acme-challenge.a.x.test", RecordType.TXT, "token-one"),
    ("_acme-challenge.a.x.test", RecordType.TXT, "token-two"),
    ("_ACME-Challenge.B.x.test", RecordType.TXT, "upper-case owner"),
    ("www.x.test", RecordType.A, "192.0.2.1"),
    ("www.x.test", RecordType.A, "192.0.2.2"),
    ("www.x.test", RecordType.AAAA, "2001:db8::1"),
    ("alias.x.test", RecordType.CNAME, "www.x.test"),
    ("away.x.test", RecordType.CNAME, "elsewhere.invalid"),
    ("*.w.x.test", RecordType.TXT, "wildcard"),
    ("deep.a.b.c.x.test", RecordType.TXT, "below empty non-terminals"),
    ("ns1.x.test", RecordType.TXT, "at the name server host"),
    ("t.hostmaster.x.test", RecordType.A, "192.0.2.9"),
    ("v.ns1.x.test", RecordType.A, "192.0.2.10"),
    ("big.x.test", RecordType.TXT, "x" * 200),
    ("in.sub.x.test", RecordType.TXT, "in the deeper zone"),
    ("_acme-challenge.y.example", RecordType.TXT, "another zone"),
]
BIG = [f"{i:03d}-" + "y" * 180 for i in range(12)]  # a set larger than 512 octets

NAMES = [
    "_acme-challenge.a.x.test",
    "_ACME-CHALLENGE.a.X.TeSt",
    "_acme-challenge.b.x.test",
    "www.x.test",
    "WWW.X.TEST",
    "alias.x.test",
    "away.x.test",
    "any.w.x.test",
    "two.levels.w.x.test",
    "*.w.x.test",
    "w.x.test",
    "c.x.test",
    "b.c.x.test",
    "a.b.c.x.test",
    "below.deep.a.b.c.x.test",
    "absent.x.test",
    "child.absent.x.test",
    "x.test",
    "ns1.x.test",
    "v.ns1.x.test",
    "hostmaster.x.test",
    "t.hostmaster.x.test",
    "u.hostmaster.x.test",
    "q.ns1.x.test",
    "ns1.y.example",
    "q.ns1.y.example",
    "NS1.Y.example",
    "big.x.test",
    "huge.x.test",
    "sub.x.test",
    "in.sub.x.test",
    "gone.sub.x.test",
    "_acme-challenge.y.example",
    "nothing.y.example",
    "outside.invalid",
    "test",
    ".",
]
QTYPES = ["A", "AAAA", "TXT", "CAA", "NS", "SOA", "CNAME", "MX", "ANY", "PTR", "TYPE0", "TYPE65535"]


def filled(store: RecordStore) -> RecordStore:
    for name, rtype, value in RECORDS:
        store.add(parse_name(name), make_rdata(rtype, value))
    store.add(parse_name("www.x.test"), caa_rdata("issue", "ca.test"))
    for value in BIG:
        store.add(parse_name("huge.x.test"), make_rdata(RecordType.TXT, value))
    return store


STORES: dict[str, Callable[[], RecordStore]] = {
    "zones": lambda: filled(RecordStore(("x.test", "sub.x.test", "y.example"), ttl=30)),
    "implicit zones": lambda: filled(RecordStore(ttl=0)),
    "default address": lambda: filled(RecordStore(("x.test",), default_ipv4="192.0.2.77")),
    "apex wildcard": lambda: with_apex_wildcard(filled(RecordStore(("x.test", "y.example")))),
}


def with_apex_wildcard(store: RecordStore) -> RecordStore:
    """A wildcard at the apex: it must not answer for the NS host or below it."""
    for zone in ("x.test", "y.example"):
        store.add(parse_name(f"*.{zone}"), make_rdata(RecordType.A, "10.0.0.1"))
        store.add(parse_name(f"*.{zone}"), make_rdata(RecordType.TXT, "wild"))
    return store


def variants(name: str, qtype: str) -> list[tuple[str, bytes]]:
    """The same question in the shapes resolvers and odd clients send."""
    out = []
    for label, edns, payload, flags, options in [
        ("plain", -1, 0, dns.flags.RD, []),
        ("no RD", -1, 0, 0, []),
        ("AD and CD", -1, 0, dns.flags.AD | dns.flags.CD | dns.flags.RD, []),
        ("EDNS 1232", 0, 1232, dns.flags.RD, []),
        ("EDNS 512", 0, 512, 0, []),
        ("EDNS 100", 0, 100, 0, []),
        ("EDNS 4096", 0, 4096, 0, []),
        ("EDNS version 1", 1, 1232, 0, []),
        ("EDNS cookie", 0, 1232, 0, [dns.edns.GenericOption(10, b"\x01" * 8)]),
        ("AA set", -1, 0, dns.flags.AA, []),
    ]:
        query = dns.message.make_query(name, qtype, use_edns=edns, payload=payload or 1232)
        query.flags = flags
        if options:
            query.use_edns(0, 0, payload, options=options)
        out.append((label, query.to_wire()))
    do = dns.message.make_query(name, qtype, use_edns=0, want_dnssec=True)
    out.append(("DO", do.to_wire()))
    return out


def both(store: RecordStore) -> tuple[DnsHandler, DnsHandler]:
    return DnsHandler(store), DnsHandler(store, fast_path=False)


def equal(got: bytes | None, want: bytes | None) -> bool:
    """The same octets, or the same message with RRsets in another order."""
    if got == want or got is None or want is None or len(got) != len(want):
        return got == want
    return bool(dns.message.from_wire(got) == dns.message.from_wire(want))


def same(fast: DnsHandler, general: DnsHandler, wire: bytes, transport: Transport) -> bool:
    """Both handlers give the same answer; True if the fast path gave it."""
    answered = fastpath.answer(fast.store, wire, transport is Transport.TCP, fast.udp_payload)
    got, want = fast.handle(wire, transport), general.handle(wire, transport)
    assert equal(got, want), (wire.hex(), got, want)
    if answered is not None:
        assert equal(answered, want)
    return answered is not None


@pytest.mark.parametrize("kind", STORES)
def test_every_shape_matches_the_general_path(kind: str) -> None:
    fast, general = both(STORES[kind]())
    taken = 0
    # With a default address the fast path declines everything: one transport shows it.
    transports = [Transport.UDP] if kind == "default address" else list(Transport)
    for name, qtype, transport in itertools.product(NAMES, QTYPES, transports):
        for _label, wire in variants(name, qtype):
            taken += same(fast, general, wire, transport)
    if kind == "default address":
        assert taken == 0  # every name exists there: always the general path
    else:
        assert taken > 1000


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "answers"),
    [
        ("_acme-challenge.a.x.test", "TXT", dns.rcode.NOERROR, 2),
        ("_Acme-Challenge.A.X.Test", "TXT", dns.rcode.NOERROR, 2),
        ("www.x.test", "CAA", dns.rcode.NOERROR, 1),
        ("www.x.test", "AAAA", dns.rcode.NOERROR, 1),
        ("www.x.test", "TXT", dns.rcode.NOERROR, 0),  # NODATA
        ("b.c.x.test", "TXT", dns.rcode.NOERROR, 0),  # an empty non-terminal
        ("absent.x.test", "TXT", dns.rcode.NXDOMAIN, 0),
        ("w.x.test", "A", dns.rcode.NOERROR, 0),  # the wildcard makes its parent exist
        ("u.hostmaster.x.test", "SOA", dns.rcode.NXDOMAIN, 0),
        ("q.ns1.x.test", "NS", dns.rcode.NXDOMAIN, 0),
    ],
)
def test_common_questions_take_the_fast_path(
    name: str, qtype: str, rcode: dns.rcode.Rcode, answers: int
) -> None:
    store = STORES["zones"]()
    wire = dns.message.make_query(name, qtype, use_edns=0).to_wire()
    reply = fastpath.answer(store, wire, False, 1232)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() == rcode and parsed.flags & dns.flags.AA
    assert parsed.question[0].name.to_text() == name + "."  # the query's own spelling
    assert sum(len(rrset) for rrset in parsed.answer) == answers
    if not answers:  # RFC 2308 §3: the zone's SOA, with the current serial
        (soa,) = parsed.authority
        assert soa.rdtype == dns.rdatatype.SOA and soa.name == dns.name.from_text("x.test")
        assert soa[0].serial == store.serial


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        ("x.test", "SOA"),  # apex: synthesized
        ("ns1.x.test", "A"),  # the NS host: synthesized
        ("alias.x.test", "A"),  # a CNAME to chase
        ("any.w.x.test", "TXT"),  # a wildcard to expand
        ("outside.invalid", "A"),  # REFUSED
        ("www.x.test", "MX"),  # an uncommon type
        ("huge.x.test", "TXT"),  # too big for 512 octets: truncated
    ],
)
def test_the_rest_is_declined(name: str, qtype: str) -> None:
    wire = dns.message.make_query(name, qtype).to_wire()
    assert fastpath.answer(STORES["zones"](), wire, False, 1232) is None


def test_truncation_over_udp_and_whole_over_tcp() -> None:
    fast, general = both(STORES["zones"]())
    wire = dns.message.make_query("huge.x.test", "TXT").to_wire()
    udp = fast.handle(wire, Transport.UDP)
    assert udp is not None and dns.message.from_wire(udp).flags & dns.flags.TC
    tcp = fastpath.answer(fast.store, wire, True, fast.udp_payload)
    assert tcp is not None and equal(tcp, general.handle(wire, Transport.TCP))
    assert len(dns.message.from_wire(tcp).answer[0]) == len(BIG)


def test_changes_reach_the_fast_path_at_once() -> None:
    store = STORES["zones"]()
    fast, general = both(store)
    name = parse_name("_acme-challenge.new.x.test")
    wire = dns.message.make_query(name, "TXT", use_edns=0).to_wire()
    assert same(fast, general, wire, Transport.UDP)
    store.add(name, make_rdata(RecordType.TXT, "fresh"))
    assert same(fast, general, wire, Transport.UDP)
    assert b"fresh" in (fast.handle(wire) or b"")
    store.remove(name, make_rdata(RecordType.TXT, "fresh"))
    reply = fast.handle(wire)
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.NXDOMAIN
    assert same(fast, general, wire, Transport.UDP)


def index_of(store: RecordStore) -> tuple[dict[bytes, dict[int, object]], dict[bytes, int]]:
    return store.wire.rrsets, dict(store.wire.above)


def test_incremental_index_equals_a_rebuilt_one() -> None:
    rng = random.Random(4343)
    store = RecordStore(("x.test",), ttl=5)
    labels = ["a", "B", "c", "_acme-challenge", "*"]
    for _ in range(400):
        depth = rng.randint(1, 4)
        name = parse_name(".".join(rng.choice(labels) for _ in range(depth)) + ".x.test")
        rdata = make_rdata(RecordType.TXT, rng.choice(["one", "two", "three"]))
        if rng.random() < 0.55:
            store.add(name, rdata)
        else:
            store.remove(name, rdata)
    rebuilt = RecordStore(("x.test",), ttl=5)
    rebuilt.restore(store.snapshot())
    assert index_of(store) == index_of(rebuilt)
    fresh = WireIndex(5)
    for name in store.names():
        fresh.put(name, {t: store.rdatas(name, t) for t in store.types_at(name)})
    assert index_of(store) == (fresh.rrsets, dict(fresh.above))
    assert all(k == k.lower() for k in store.wire.rrsets)
    assert wire_key(parse_name("A.X.TEST")) == wire_key(parse_name("a.x.test"))


FUZZ_STORE = STORES["zones"]()
FUZZ_FAST, FUZZ_GENERAL = both(FUZZ_STORE)
GOOD = [
    dns.message.make_query("_acme-challenge.a.x.test", "TXT", use_edns=0).to_wire(),
    dns.message.make_query("absent.x.test", "A").to_wire(),
    dns.message.make_query("b.c.x.test", "CAA", use_edns=0).to_wire(),
]


def check(wire: bytes) -> None:
    """Never raises; the fast path answers only what dnspython parses, and as it would;
    what dnspython cannot parse is FORMERR (RFC 1035 §4.1.1) with the query's ID."""
    for transport in Transport:
        answered = fastpath.answer(FUZZ_STORE, wire, transport is Transport.TCP, 1232)
        reply = FUZZ_FAST.handle(wire, transport)
        assert equal(reply, FUZZ_GENERAL.handle(wire, transport))
        if len(wire) < 12 or wire[2] & 0x80:
            assert reply is None
            continue
        if limits.excess(wire) is None and (wire[2] >> 3) & 0x0F == dns.opcode.UPDATE:
            # A server without keys refuses every UPDATE within the bounds from its header
            # alone, parsed or not (RFC 2136 §3.3: none could be accepted).
            assert answered is None and reply is not None and reply[:2] == wire[:2]
            assert reply[3] & 0x0F == dns.rcode.REFUSED
            continue
        try:
            dns.message.from_wire(wire, keyring=False)
        except Exception:
            assert answered is None
            assert reply is not None and reply[:2] == wire[:2]
            assert reply[3] & 0x0F == dns.rcode.FORMERR
            continue
        if answered is not None:
            assert equal(answered, reply)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=12, max_size=300))
def test_random_bytes(wire: bytes) -> None:
    check(wire)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(GOOD), st.data())
def test_mutated_queries(good: bytes, data: st.DataObject) -> None:
    wire = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(2, len(wire) - 1))
        wire[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(12, len(wire)))
    check(bytes(wire[:cut]) + data.draw(st.binary(max_size=12)))


def test_hand_made_oddities() -> None:
    question = b"\x01a\x01x\x04test\x00" + struct.pack("!HH", 16, 1)
    header = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    for wire in [
        header + question,  # NXDOMAIN, taken
        header + question + b"\x00",  # trailing junk: FORMERR
        header[:11] + b"\x01" + question + opt,  # with OPT, taken
        header[:11] + b"\x01" + question + opt[:-1],  # OPT cut short: FORMERR
        header[:11] + b"\x01" + question + opt + b"\x00",  # junk after OPT
        header[:11] + b"\x01" + question + b"\x01a" + opt[1:],  # OPT not at the root
        header[:11] + b"\x01" + question + opt[:5] + b"\x01" + opt[6:],  # extended RCODE
        header[:11] + b"\x02" + question + opt + opt,  # two OPT records
        header + b"\xc0\x0c" + question[-4:],  # a pointer to itself
        header + b"\x40" + question,  # an extended label type
        header + b"\x3f" + b"a" * 63 + question,  # a 63-octet label
        header + (b"\x3f" + b"a" * 63) * 4 + question,  # a name over 255 octets
        header + question[:-2],  # question cut short
        header[:4] + b"\x00\x02" + header[6:] + question * 2,  # two questions
    ]:
        check(wire)
    assert fastpath.answer(FUZZ_STORE, header + question, False, 1232) is not None
    assert fastpath.answer(FUZZ_STORE, header + question + b"\x00", False, 1232) is None

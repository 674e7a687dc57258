"""Whatever a DNS message holds, the server answers with a well-formed response carrying
the query's ID, or drops it; never an internal error (SERVFAIL).

Complements test_dns_fuzz.py (random and mutated bytes) with structured messages that
parse: odd names, types, classes, opcodes, flags and EDNS, and UPDATEs signed with our
TSIG key whose zone, prerequisites and updates are arbitrary, so `dns.update` sees them.
Also the validation authority's own wire reader (`validation.stub`), which must leave
anything odd to the full resolver rather than raise.
"""

from __future__ import annotations

import contextlib
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update
from hypothesis import example, given, settings
from hypothesis import strategies as st

from acmekit.dns.handler import DnsHandler, Transport
from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name
from acmekit.dns.tsig import make_keyring, parse_key
from acmekit.server.validation import stub

FAST = settings(max_examples=250, deadline=None)
KEY = parse_key("update-key:" + "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0")
STORE = RecordStore(("x.test",), default_ipv4="127.0.0.1")
STORE.add(parse_name("_acme-challenge.x.test"), make_rdata(RecordType.TXT, "v"))
HANDLER = DnsHandler(STORE, make_keyring([KEY]))

labels = st.text(alphabet="aBc-_*0\\. ", min_size=1, max_size=20) | st.sampled_from(
    ["x", "test", "_acme-challenge", "*", "xn--ls8h"]
)
names = st.lists(labels, min_size=0, max_size=6).map(
    lambda parts: dns.name.Name([p.encode() for p in parts] + [b""])
)
zone_names = st.sampled_from(["x.test.", "test.", ".", "other.example."]).map(dns.name.from_text)
rdtypes = st.sampled_from([1, 5, 6, 16, 28, 33, 35, 252, 255, 257]) | st.integers(0, 65535)
rdclasses = st.sampled_from([1, 3, 254, 255]) | st.integers(0, 65535)


def check(wire: bytes, transport: Transport = Transport.UDP) -> None:
    reply = HANDLER.handle(wire, transport)
    if reply is None:
        return
    assert reply[:2] == wire[:2]
    parsed = dns.message.from_wire(reply, keyring=False)
    assert parsed.flags & dns.flags.QR
    assert parsed.rcode() != dns.rcode.SERVFAIL


def valid_name(name: dns.name.Name) -> bool:
    try:
        name.to_wire()
    except Exception:  # too long: not something a peer can send either
        return False
    return True


@FAST
@given(
    names,
    rdtypes,
    rdclasses,
    st.integers(0, 0xFFFF),
    st.integers(-1, 2),
    st.integers(0, 65535),
    st.lists(st.tuples(st.integers(0, 65535), st.binary(max_size=20)), max_size=2),
    st.sampled_from(list(Transport)),
)
@example(dns.name.from_text("_acme-challenge.X.test."), 16, 1, 0x0100, 0, 512, [], Transport.UDP)
def test_structured_queries(
    name: dns.name.Name,
    rdtype: int,
    rdclass: int,
    flags: int,
    edns: int,
    payload: int,
    options: list[tuple[int, bytes]],
    transport: Transport,
) -> None:
    if not valid_name(name):
        return
    query = dns.message.Message(id=0x4242)
    query.flags = flags & ~dns.flags.QR & 0xFFFF
    query.question.append(dns.rrset.RRset(name, rdclass, rdtype))
    query.use_edns(
        edns,
        payload=payload,
        options=[dns.edns.GenericOption(code, data) for code, data in options],
    )
    try:
        wire = query.to_wire()
    except Exception:  # dnspython will not write this message; nor can a peer send it
        return
    check(wire, transport)
    check(wire, transport)  # the second time from the answer cache


@FAST
@given(
    zone_names,
    st.lists(st.tuples(names, rdclasses, rdtypes, st.binary(max_size=12)), max_size=3),
    st.lists(
        st.tuples(
            names,
            st.sampled_from(["add", "delete", "delete-rrset", "delete-name"]),
            rdtypes,
            st.binary(max_size=12),
        ),
        max_size=4,
    ),
)
@example(
    dns.name.from_text("x.test."), [], [(dns.name.from_text("a.x.test."), "add", 16, b"\x01v")]
)
def test_signed_updates(
    zone: dns.name.Name,
    prerequisites: list[tuple[dns.name.Name, int, int, bytes]],
    updates: list[tuple[dns.name.Name, str, int, bytes]],
) -> None:
    message = dns.update.UpdateMessage(zone, keyring=make_keyring([KEY]), keyname=KEY.name)
    for name, rdclass, rdtype, data in prerequisites:
        if valid_name(name):
            message.prerequisite.append(dns.rrset.RRset(name, rdclass, rdtype))
            if data and rdclass == 1:
                message.prerequisite[-1].add(dns.rdata.GenericRdata(rdclass, rdtype, data))
    for name, how, rdtype, data in updates:
        if not valid_name(name) or rdtype in (0, 41, 250, 251, 252, 255):
            continue
        rdata = dns.rdata.GenericRdata(dns.rdataclass.IN, rdtype, data)
        if how == "add":
            message.add(name, 60, rdata)
        elif how == "delete":
            message.delete(name, rdata)
        elif how == "delete-rrset":
            message.delete(name, rdtype)
        else:
            message.delete(name)
    try:
        wire = message.to_wire()
    except Exception:
        return
    check(wire)
    check(wire, Transport.TCP)


QUESTION = b"\x01a\x04test\x00" + struct.pack("!HH", 16, 1)


@FAST
@given(st.binary(max_size=120))
@example(b"\x12\x34")  # shorter than a header: once an uncaught struct.error
@example(b"\x12\x34\x81\x80\x00\x01")
def test_stub_reader_leaves_odd_answers_to_the_resolver(tail: bytes) -> None:
    for data in (
        tail,
        tail[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + QUESTION + tail[2:],
    ):
        with contextlib.suppress(stub._Unusual, ValueError):
            stub._read(data, QUESTION, "a.test.", 16, stub.decode_txt)

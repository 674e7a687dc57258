"""Malformed and random messages never crash the handler: FORMERR or silence."""

from __future__ import annotations

import struct

import dns.message
import dns.rcode
from hypothesis import given, settings
from hypothesis import strategies as st

from acmekit.dns.handler import DnsHandler, Transport
from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name

HANDLER = DnsHandler(RecordStore(default_ipv4="127.0.0.1"))
HANDLER.store.add(parse_name("_acme-challenge.x.test"), make_rdata(RecordType.TXT, "v"))
GOOD = dns.message.make_query("_acme-challenge.x.test.", "TXT", use_edns=0).to_wire()


def header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qd, an, ns, ar)


def check_reply(wire: bytes, reply: bytes | None) -> None:
    """A reply, if any, is a parseable response to the same ID."""
    if reply is None:
        return
    assert reply[:2] == wire[:2]
    parsed = dns.message.from_wire(reply, keyring=False)
    assert parsed.flags & 0x8000


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(wire: bytes) -> None:
    for transport in Transport:
        check_reply(wire, HANDLER.handle(wire, transport))


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=12, max_value=len(GOOD) - 1), st.binary(max_size=40))
def test_mutated_good_query(cut: int, tail: bytes) -> None:
    wire = GOOD[:cut] + tail
    check_reply(wire, HANDLER.handle(wire))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOOD) - 1), st.integers(0, 255))
def test_one_byte_flipped(pos: int, value: int) -> None:
    wire = bytearray(GOOD)
    wire[pos] = value
    check_reply(bytes(wire), HANDLER.handle(bytes(wire)))


def formerr(wire: bytes) -> None:
    reply = HANDLER.handle(wire)
    assert reply is not None
    assert reply[:2] == wire[:2] and reply[3] & 0x0F == dns.rcode.FORMERR


def test_truncated_question_is_formerr() -> None:
    formerr(GOOD[:20])


def test_counts_larger_than_the_message_are_formerr() -> None:
    formerr(header(qd=1, an=5) + GOOD[12:])


def test_compression_loop_is_formerr() -> None:
    # the question name is a pointer to itself (offset 12)
    formerr(header() + b"\xc0\x0c" + struct.pack("!HH", 16, 1))


def test_label_over_63_octets_is_formerr() -> None:
    formerr(header() + b"\x50" + b"a" * 80 + b"\x00" + struct.pack("!HH", 16, 1))


def test_name_over_255_octets_is_formerr() -> None:
    name = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00"
    formerr(header() + name + struct.pack("!HH", 16, 1))


def test_trailing_junk_is_formerr() -> None:
    formerr(GOOD + b"junk")


def test_two_opt_records_are_formerr() -> None:
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    formerr(header(ar=2) + GOOD[12 : len(GOOD) - len(opt)] + opt + opt)

"""The lean DNS stub's reading of answers: what it takes, and what it leaves to dnspython.

Answers are built with dnspython; where the stub answers, its result must be what
dnspython's own chaining reads from the same message.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from acmekit.server.validation.stub import (
    Reply,
    _question,
    _read,
    _Unusual,
    decode_a,
    decode_aaaa,
    decode_caa,
    decode_txt,
)

QNAME = "www.Example.test."


def reply(
    rdtype: str = "A",
    answer: list[tuple[str, str, list[str]]] | None = None,
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    qname: str = QNAME,
) -> bytes:
    query = dns.message.make_query(qname, rdtype)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for owner, kind, values in answer or []:
        response.answer.append(dns.rrset.from_text(owner, 60, "IN", kind, *values))
    response.authority.append(
        dns.rrset.from_text("Example.test.", 60, "IN", "SOA", "ns. h. 1 2 3 4 5")
    )
    return response.to_wire()


def read(data: bytes, rdtype: str = "A", qname: str = QNAME) -> Reply[str]:
    kind = dns.rdatatype.from_text(rdtype)
    decode = {"A": decode_a, "AAAA": decode_aaaa, "TXT": decode_txt}[rdtype]
    return _read(data, _question(qname, kind), qname, kind, decode)


def dnspython_reads(data: bytes) -> tuple[tuple[str, ...] | None, str]:
    message = dns.message.from_wire(data)
    assert isinstance(message, dns.message.QueryMessage)
    chained = message.resolve_chaining()
    if chained.answer is None:
        return None, chained.canonical_name.to_text()
    return tuple(str(r) for r in chained.answer), chained.canonical_name.to_text()


def test_address_answer() -> None:
    data = reply(answer=[(QNAME, "A", ["192.0.2.1", "192.0.2.2"])])
    got = read(data)
    assert sorted(got.values or ()) == ["192.0.2.1", "192.0.2.2"]
    assert (got.values, got.canonical) == dnspython_reads(data)


def test_duplicates_kept_once_in_order() -> None:
    query = dns.message.make_query(QNAME, "A")
    response = dns.message.make_response(query)
    rrset = dns.rrset.from_text(QNAME, 60, "IN", "A", "192.0.2.9", "192.0.2.1")
    response.answer.append(rrset)
    wire = bytearray(response.to_wire())
    wire[7] += 1  # ANCOUNT + 1, and the first record once more at the end
    first = wire.index(bytes([192, 0, 2, 9])) - 12
    wire += wire[first : first + 16]
    got = read(bytes(wire))
    assert got.values is not None and len(got.values) == 2
    assert got.values == dnspython_reads(bytes(wire))[0]


def test_cname_chain_within_the_answer() -> None:
    data = reply(
        answer=[
            (QNAME, "CNAME", ["mid.other.test."]),
            ("mid.other.test.", "CNAME", ["End.other.test."]),
            ("end.other.test.", "A", ["192.0.2.7"]),
        ]
    )
    got = read(data)
    assert got.values == ("192.0.2.7",)
    assert (got.values, got.canonical.lower()) == tuple(
        v.lower() if isinstance(v, str) else v for v in dnspython_reads(data)
    )


def test_cname_without_target_records_gives_the_target() -> None:
    data = reply(answer=[(QNAME, "CNAME", ["alias.other.test."])])
    assert read(data) == Reply(False, None, "alias.other.test.")
    assert dnspython_reads(data) == (None, "alias.other.test.")


def test_nodata_gives_the_name_as_asked() -> None:
    assert read(reply()) == Reply(False, None, QNAME)


def test_nxdomain() -> None:
    assert read(reply(rcode=dns.rcode.NXDOMAIN)).nxdomain


@pytest.mark.parametrize(
    "data",
    [
        reply(rcode=dns.rcode.SERVFAIL),
        reply(rcode=dns.rcode.REFUSED),
        reply(rcode=dns.rcode.FORMERR),
        reply(rcode=dns.rcode.NXDOMAIN, answer=[(QNAME, "A", ["192.0.2.1"])]),
        reply(qname="other.test."),
        reply(rdtype="AAAA"),
        reply(answer=[(QNAME, "A", ["192.0.2.1"])]) + b"\x00",
        reply(answer=[(QNAME, "A", ["192.0.2.1"])])[:-1],
        reply(answer=[(QNAME, "CNAME", ["we\\.ird.test."])]),
        reply(answer=[(QNAME, "CNAME", ["sp\\032ace.test."])]),
    ],
    ids=[
        "servfail",
        "refused",
        "formerr",
        "nxdomain-with-answer",
        "other-name",
        "other-type",
        "trailing-byte",
        "cut-short",
        "dot-in-label",
        "space-in-label",
    ],
)
def test_left_to_the_resolver(data: bytes) -> None:
    with pytest.raises(_Unusual):
        read(data)


def test_truncated_is_left_to_the_resolver() -> None:
    message = dns.message.from_wire(reply(answer=[(QNAME, "A", ["192.0.2.1"])]))
    message.flags |= dns.flags.TC
    with pytest.raises(_Unusual):
        read(message.to_wire())


def test_not_a_response_is_left_to_the_resolver() -> None:
    wire = bytearray(reply())
    wire[2] &= 0x7F
    with pytest.raises(_Unusual):
        read(bytes(wire))


def test_pointer_loop_and_forward_pointer() -> None:
    wire = bytearray(reply(answer=[(QNAME, "A", ["192.0.2.1"])]))
    at = 12 + len(_question(QNAME, 1))  # the answer's owner: a pointer to the question
    assert wire[at : at + 2] == b"\xc0\x0c"
    looped = wire[:]
    looped[at : at + 2] = bytes([0xC0, at])  # points at itself
    forward = wire[:]
    forward[at : at + 2] = bytes([0xC0, at + 2])
    for data in (looped, forward):
        with pytest.raises(_Unusual):
            read(bytes(data))


def test_chain_longer_than_dnspython_allows() -> None:
    links = [(f"n{i}.test.", "CNAME", [f"n{i + 1}.test."]) for i in range(20)]
    data = reply(qname="n0.test.", answer=links)
    with pytest.raises(_Unusual):
        read(data, qname="n0.test.")


def test_mutated_answers_agree_with_dnspython_or_are_left_to_it() -> None:
    """Where both read a message, they read the same answer.

    dnspython parses every record; the stub skips the rdata of records it does not use (a
    mutated type can make one), so only messages dnspython reads are compared.
    """
    query = dns.message.make_query(QNAME, "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(QNAME, 60, "IN", "CNAME", "t.other.test."))
    response.answer.append(dns.rrset.from_text("t.other.test.", 60, "IN", "A", "192.0.2.3"))
    agreed = 0
    for wire in _mutated(response.to_wire(), seed=8555, start=12, most=3):
        try:
            ours = read(wire)
        except (_Unusual, ValueError):
            continue
        if ours.nxdomain:
            continue
        try:
            theirs = dnspython_reads(wire)
        except dns.exception.DNSException:
            continue
        assert ours.values == theirs[0]
        assert ours.canonical.lower() == theirs[1].lower()
        agreed += 1
    assert agreed > 100


def _mutated(base: bytes, *, seed: int, start: int, most: int) -> Iterator[bytes]:
    """5,000 copies of `base`, each with 1 to `most` bytes from `start` on set at random."""
    rng = random.Random(seed)
    for _ in range(5000):
        wire = bytearray(base)
        for _ in range(rng.randint(1, most)):
            wire[rng.randrange(start, len(wire))] = rng.randrange(256)
        yield bytes(wire)


def test_questions() -> None:
    assert _question("a-b.c_d.test.", 1) == b"\x03a-b\x03c_d\x04test\x00\x00\x01\x00\x01"
    for odd in ("no-dot", "a..test.", "é.test.", "sp ace.test.", "x" * 64 + ".test."):
        with pytest.raises(_Unusual):
            _question(odd, 1)


def test_decoders() -> None:
    assert decode_a(bytes([192, 0, 2, 1])) == "192.0.2.1"
    assert decode_aaaa(bytes(15) + b"\x01") == "::1"
    assert decode_txt(b"\x03abc\x00\x02de") == "abcde"
    assert decode_caa(b"\x80\x05issueca.test; accounturi=x") == (
        128,
        "issue",
        "ca.test; accounturi=x",
    )
    for bad in (b"\x00", b"\x00\x00ca", b"\x00\x05is-ueca", b"\x00\x09issue"):
        with pytest.raises(ValueError):
            decode_caa(bad)
    for txt in (b"", b"\x05abc"):
        with pytest.raises(ValueError):
            decode_txt(txt)
    with pytest.raises(ValueError):
        decode_a(bytes(16))
    with pytest.raises(ValueError):
        decode_aaaa(bytes(4))


def test_caa_decoding_agrees_with_dnspython() -> None:
    rrset = dns.rrset.from_text("x.test.", 60, "IN", "CAA", '0 issue "ca.test"', '128 tbs "v"')
    for rdata in rrset:
        wire = rdata.to_wire()
        flags, tag, value = decode_caa(wire)
        assert (flags, tag.encode(), value.encode()) == (rdata.flags, rdata.tag, rdata.value)
    assert dns.name.from_text("x.test.") == rrset.name


def test_pointer_cycle_ends() -> None:
    """A pointer back into the labels it was reached through would cycle without the rule."""
    header = bytes.fromhex("1234 8180 0001 0001 0000 0000")
    question = _question("ab.test.", 1)
    # answer owner at 12+len(question): label "ab" then a pointer back to that label
    at = 12 + len(question)
    owner = b"\x02ab" + bytes([0xC0, at])
    data = header + question + owner + b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"
    with pytest.raises(_Unusual):
        read(data, qname="ab.test.")


def test_a_record_of_a_parent_name_is_not_the_question_s() -> None:
    """An owner compressed to a pointer into the question's name is that suffix, read
    without walking it again: a parent's record is not taken for the name asked."""
    data = reply(answer=[("example.test.", "A", ["192.0.2.5"]), ("test.", "A", ["192.0.2.6"])])
    assert data.count(b"\xc0\x10") and data.count(b"\xc0\x18")  # pointers into the question
    assert read(data) == Reply(False, None, QNAME)
    assert dnspython_reads(data) == (None, QNAME)
    both = reply(answer=[("example.test.", "A", ["192.0.2.5"]), (QNAME, "A", ["192.0.2.4"])])
    assert read(both).values == ("192.0.2.4",) == dnspython_reads(both)[0]


def test_a_question_asked_again_is_built_once() -> None:
    """CAA's parents ("test.", ...) are asked for every name below them: their question
    is remembered, and is the same bytes as a fresh one."""
    first = _question("Parent.test.", dns.rdatatype.CAA)
    assert _question("Parent.test.", dns.rdatatype.CAA) is first
    assert first == b"\x06Parent\x04test\x00" + bytes((1, 1, 0, 1))
    assert _question("Parent.test.", dns.rdatatype.A) == first[:-4] + bytes((0, 1, 0, 1))
    with pytest.raises(_Unusual):
        _question("bad name.test.", dns.rdatatype.CAA)


def _single_a() -> bytes:
    return reply(answer=[(QNAME, "A", ["192.0.2.7"])])


def _nodata() -> bytes:
    return reply()


def _other_case() -> bytes:
    return reply(answer=[(QNAME.upper(), "A", ["192.0.2.8"])], qname=QNAME.upper())


@pytest.mark.parametrize("build", [_single_a, _nodata, _other_case])
def test_mutated_short_answers_agree_with_dnspython_or_are_left_to_it(
    build: Callable[[], bytes],
) -> None:
    """The shortcuts for one record of the name and type asked, for no record at all, and
    for a question echoed exactly: mutated, the stub still reads what dnspython reads."""
    base = build()
    assert read(base).values == dnspython_reads(base)[0]
    agreed = 0
    for wire in _mutated(base, seed=8659, start=2, most=2):
        try:
            ours = read(wire)
        except (_Unusual, ValueError):
            continue
        try:
            message = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            continue
        if message.rcode() == dns.rcode.NXDOMAIN:
            assert ours.nxdomain
            continue
        assert not ours.nxdomain
        theirs = dnspython_reads(wire)
        assert ours.values == theirs[0]
        assert ours.canonical.lower() == theirs[1].lower()
        agreed += 1
    assert agreed > 100

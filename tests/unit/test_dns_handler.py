"""The DNS message handler: queries, EDNS, truncation, TSIG and UPDATE, without sockets."""

from __future__ import annotations

import base64
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from acmekit.dns.handler import DnsHandler, Transport
from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name, txt_value
from acmekit.dns.tsig import make_keyring, parse_key

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
KEY_SPEC = f"update-key:{SECRET}"


def make_handler() -> DnsHandler:
    store = RecordStore(("x.test",), default_ipv4="127.0.0.1")
    name = parse_name("_acme-challenge.x.test")
    store.add(name, make_rdata(RecordType.TXT, "apex-value"))
    store.add(name, make_rdata(RecordType.TXT, "wildcard-value"))
    big = parse_name("big.x.test")
    for i in range(40):
        store.add(big, make_rdata(RecordType.TXT, f"{i:03d}" + "x" * 60))
    return DnsHandler(store, make_keyring([parse_key(KEY_SPEC)]))


def ask(handler: DnsHandler, query: dns.message.Message, **kw: Transport) -> dns.message.Message:
    wire = handler.handle(query.to_wire(), **kw)
    assert wire is not None
    return dns.message.from_wire(wire, keyring=query.keyring, request_mac=query.mac or b"")


def keyring() -> dict[dns.name.Name, dns.tsig.Key]:
    return dns.tsigkeyring.from_text({"update-key": SECRET})  # type: ignore[no-any-return]


def test_txt_query_is_authoritative_with_both_values() -> None:
    res = ask(make_handler(), dns.message.make_query("_acme-challenge.x.test.", "TXT"))
    assert res.rcode() == dns.rcode.NOERROR and res.flags & dns.flags.AA
    assert not res.flags & dns.flags.RA
    assert sorted(txt_value(rd) for rd in res.answer[0]) == ["apex-value", "wildcard-value"]


def test_nxdomain_in_explicit_zone_with_default_is_nodata() -> None:
    res = ask(make_handler(), dns.message.make_query("nothing.x.test.", "TXT"))
    assert res.rcode() == dns.rcode.NOERROR and not res.answer
    assert res.authority[0].rdtype == dns.rdatatype.SOA


def test_out_of_zone_is_refused() -> None:
    res = ask(make_handler(), dns.message.make_query("example.com.", "A"))
    assert res.rcode() == dns.rcode.REFUSED and not res.flags & dns.flags.AA


def test_large_answer_is_truncated_over_udp_but_whole_over_tcp() -> None:
    handler = make_handler()
    query = dns.message.make_query("big.x.test.", "TXT")  # no EDNS: 512 octets
    udp = ask(handler, query)
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = ask(handler, query, transport=Transport.TCP)
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 40


def test_edns_payload_is_honoured_and_echoed() -> None:
    handler = make_handler()
    small = dns.message.make_query("_acme-challenge.x.test.", "TXT", use_edns=0, payload=4096)
    res = ask(handler, small)
    assert res.edns == 0 and res.payload == 1232
    big = ask(handler, dns.message.make_query("big.x.test.", "TXT", use_edns=0, payload=4096))
    assert big.flags & dns.flags.TC  # 40 * 64 octets do not fit in 1232 either


def test_edns_version_1_is_badvers() -> None:
    res = ask(make_handler(), dns.message.make_query("x.test.", "SOA", use_edns=1))
    assert res.rcode() == dns.rcode.BADVERS


@pytest.mark.parametrize(
    ("qname", "qtype", "rdclass", "rcode"),
    [
        ("x.test.", "AXFR", "IN", dns.rcode.REFUSED),
        ("version.bind.", "TXT", "CH", dns.rcode.REFUSED),
    ],
)
def test_refused_questions(qname: str, qtype: str, rdclass: str, rcode: dns.rcode.Rcode) -> None:
    query = dns.message.make_query(qname, qtype, rdclass)
    assert ask(make_handler(), query).rcode() == rcode


def test_other_opcodes_are_notimp() -> None:
    query = dns.message.make_query("x.test.", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    assert ask(make_handler(), query).rcode() == dns.rcode.NOTIMP


def test_no_question_is_formerr() -> None:
    query = dns.message.Message()
    assert ask(make_handler(), query).rcode() == dns.rcode.FORMERR


def test_responses_and_runts_are_dropped() -> None:
    handler = make_handler()
    response = dns.message.make_response(dns.message.make_query("x.test.", "A"))
    assert handler.handle(response.to_wire()) is None
    assert handler.handle(b"\x00\x01\x02") is None


def test_garbage_after_header_is_formerr_with_same_id() -> None:
    wire = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x05abc"
    reply = make_handler().handle(wire)
    assert reply is not None
    assert reply[:2] == b"\xbe\xef" and reply[3] & 0x0F == dns.rcode.FORMERR and reply[2] & 0x80


def test_signed_query_gets_a_signed_answer() -> None:
    query = dns.message.make_query("x.test.", "SOA")
    query.use_tsig(keyring(), keyname="update-key", algorithm=dns.tsig.HMAC_SHA256)
    res = ask(make_handler(), query)  # from_wire verifies the response's TSIG
    assert res.had_tsig and res.answer[0].rdtype == dns.rdatatype.SOA


def update(
    name: str, keyname: str = "update-key", secret: str = SECRET
) -> dns.update.UpdateMessage:
    msg = dns.update.UpdateMessage(
        "x.test.",
        keyring=dns.tsigkeyring.from_text({keyname: secret}),
        keyalgorithm=dns.tsig.HMAC_SHA256,
    )
    msg.add(name, 60, "TXT", '"published"')
    return msg


def test_signed_update_adds_txt_and_a_signed_delete_removes_it() -> None:
    handler = make_handler()
    res = ask(handler, update("_acme-challenge.new.x.test."))
    assert res.rcode() == dns.rcode.NOERROR and res.had_tsig
    txt = ask(handler, dns.message.make_query("_acme-challenge.new.x.test.", "TXT"))
    assert txt_value(txt.answer[0][0]) == "published"
    delete = update("_acme-challenge.new.x.test.")
    delete.update = []
    delete.delete("_acme-challenge.new.x.test.", "TXT", '"published"')
    assert ask(handler, delete).rcode() == dns.rcode.NOERROR
    gone = ask(handler, dns.message.make_query("_acme-challenge.new.x.test.", "TXT"))
    assert not gone.answer


def test_unsigned_update_is_refused() -> None:
    msg = dns.update.UpdateMessage("x.test.")
    msg.add("_acme-challenge.x.test.", 60, "TXT", '"v"')
    assert ask(make_handler(), msg).rcode() == dns.rcode.REFUSED


def error_tsig(handler: DnsHandler, msg: dns.message.Message) -> tuple[int, int, bytes]:
    wire = handler.handle(msg.to_wire())
    assert wire is not None
    res = dns.message.from_wire(wire, keyring=False)
    assert res.tsig is not None
    return res.rcode(), res.tsig[0].error, res.tsig[0].mac


def test_unknown_key_is_notauth_badkey_unsigned() -> None:
    assert error_tsig(make_handler(), update("a.x.test.", keyname="other")) == (
        dns.rcode.NOTAUTH,
        dns.rcode.BADKEY,
        b"",
    )


def test_wrong_secret_is_notauth_badsig_unsigned() -> None:
    wrong = base64.b64encode(b"not the right secret at all!!!!!").decode()
    assert error_tsig(make_handler(), update("a.x.test.", secret=wrong)) == (
        dns.rcode.NOTAUTH,
        dns.rcode.BADSIG,
        b"",
    )


def test_wrong_algorithm_is_badkey() -> None:
    msg = dns.update.UpdateMessage("x.test.", keyring=keyring(), keyalgorithm=dns.tsig.HMAC_SHA512)
    msg.add("a.x.test.", 60, "TXT", '"v"')
    assert error_tsig(make_handler(), msg)[:2] == (dns.rcode.NOTAUTH, dns.rcode.BADKEY)


def test_parse_key_forms() -> None:
    assert parse_key(KEY_SPEC).algorithm == dns.tsig.HMAC_SHA256
    assert parse_key(f"hmac-sha512:k:{SECRET}").algorithm == dns.tsig.HMAC_SHA512
    for bad in ("nocolon", f"md4:k:{SECRET}", "k:not*base64", "k:"):
        with pytest.raises(ValueError):
            parse_key(bad)


def test_repeated_query_sees_changes_to_the_store() -> None:
    handler = make_handler()
    query = dns.message.make_query("_acme-challenge.cache.x.test.", "TXT")
    assert not ask(handler, query).answer
    again = ask(handler, query)
    assert again.id == query.id and not again.answer
    name = parse_name("_acme-challenge.cache.x.test")
    handler.store.add(name, make_rdata(RecordType.TXT, "now-here"))
    second = dns.message.make_query("_acme-challenge.cache.x.test.", "TXT")
    assert txt_value(ask(handler, second).answer[0][0]) == "now-here"
    handler.store.clear(name, dns.rdatatype.TXT)
    assert not ask(handler, query).answer


def test_cached_answer_keeps_the_case_of_each_query() -> None:
    handler = make_handler()
    for spelling in (
        "_acme-challenge.x.test.",
        "_ACME-Challenge.X.TEST.",
        "_aCmE-cHaLlEnGe.x.TeSt.",
    ):
        query = dns.message.make_query(spelling, "TXT", use_edns=0)
        res = ask(handler, query)
        assert res.id == query.id
        assert res.question[0].name.to_text() == spelling
        assert res.answer[0].name.to_text() == spelling
        assert len(res.answer[0]) == 2

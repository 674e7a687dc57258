"""Transfer requests that are not plain queries: a message with QR set (a response, as
if reflected) is dropped as over UDP, not answered with an internal error; a NOTIFY or
other opcode with an AXFR question is not a transfer, even with the transfer key."""

from __future__ import annotations

import base64
import logging

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.tsigkeyring
import pytest

from acmekit.dns.handler import DnsHandler
from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name
from acmekit.dns.tsig import make_keyring, parse_key

SECRET = base64.b64encode(b"h" * 32).decode()


def _handler() -> DnsHandler:
    store = RecordStore(["x.test"], ns_ipv4="127.0.0.1")
    store.add(parse_name("_acme-challenge.a.x.test"), make_rdata(RecordType.TXT, "secret"))
    keys = make_keyring([parse_key(f"xfr:{SECRET}")])
    return DnsHandler(store, keys, allow_transfer=[parse_name("xfr")])


def _axfr(*, signed: bool, qr: bool = False, opcode: int = dns.opcode.QUERY) -> bytes:
    query = dns.message.make_query("x.test.", "AXFR")
    query.set_opcode(opcode)
    if qr:
        query.flags |= dns.flags.QR
    if signed:
        query.use_tsig(dns.tsigkeyring.from_text({"xfr": SECRET}), "xfr")
    return query.to_wire()


@pytest.mark.parametrize("signed", [False, True])
def test_a_response_shaped_transfer_request_is_dropped(
    signed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="acmekit.dns.handler"):
        assert _handler().handle_stream(_axfr(signed=signed, qr=True)) is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.STATUS, dns.opcode.IQUERY])
def test_another_opcode_with_an_axfr_question_is_no_transfer(opcode: int) -> None:
    wires = _handler().handle_stream(_axfr(signed=True, opcode=opcode))
    assert wires is not None and len(wires) == 1
    reply = dns.message.from_wire(wires[0], keyring=False)
    assert reply.rcode() != dns.rcode.NOERROR and not reply.answer

"""Zone transfers out of the record store (acmekit.dns.xfr) and TCP transfer handling in
the handler: AXFR contents, IXFR difference sequences from the journal (RFC 1995 §4),
the whole zone when the journal does not reach, the SOA alone for a current client, and
TSIG: only keys named in `allow_transfer`, every message signed (RFC 8945 §5.3.1)."""

from __future__ import annotations

import base64

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

from acmekit.dns.handler import DnsHandler
from acmekit.dns.store import JOURNAL_SIZE, RecordStore, RecordType, make_rdata, parse_name
from acmekit.dns.tsig import make_keyring, parse_key
from acmekit.dns.xfr import ixfr_rrsets, zone_rrsets

MANY = 64  # TXT values of 2000 octets: about 130 KB, more than one message holds

Query = dns.message.Message
ZONE = parse_name("x.test")
SECRET = base64.b64encode(b"k" * 32).decode()
OTHER = base64.b64encode(b"o" * 32).decode()


def _store() -> RecordStore:
    return RecordStore(["x.test", "sub.x.test"], ns_ipv4="127.0.0.1")


def _txt(store: RecordStore, host: str, value: str) -> None:
    store.add(parse_name(host), make_rdata(RecordType.TXT, value))


def _texts(rrsets: list[dns.rrset.RRset]) -> list[str]:
    return [f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in rrsets for rd in r]


def test_the_zone_is_soa_ns_glue_and_its_own_records() -> None:
    store = _store()
    _txt(store, "_acme-challenge.a.x.test", "one")
    _txt(store, "_acme-challenge.b.sub.x.test", "deeper zone")
    found = _texts(zone_rrsets(store, ZONE))
    assert found == [
        f"x.test. SOA ns1.x.test. hostmaster.x.test. {store.serial} 60 10 600 0",
        "x.test. NS ns1.x.test.",
        "ns1.x.test. A 127.0.0.1",
        '_acme-challenge.a.x.test. TXT "one"',
    ]


def test_ixfr_sends_the_differences_of_each_serial() -> None:
    store = _store()
    _txt(store, "_acme-challenge.a.x.test", "one")
    start = store.serial
    _txt(store, "_acme-challenge.b.x.test", "two")
    store.clear(parse_name("_acme-challenge.a.x.test"), dns.rdatatype.TXT)
    found = ixfr_rrsets(store, ZONE, start)
    assert found is not None
    soa = [f"x.test. SOA ns1.x.test. hostmaster.x.test. {n} 60 10 600 0" for n in range(8)]
    assert _texts(found) == [
        soa[start + 2],
        soa[start], soa[start + 1], '_acme-challenge.b.x.test. TXT "two"',
        soa[start + 1], '_acme-challenge.a.x.test. TXT "one"', soa[start + 2],
        soa[start + 2],
    ]  # fmt: skip
    assert _texts(ixfr_rrsets(store, ZONE, store.serial) or []) == [soa[start + 2]]


def test_ixfr_from_beyond_the_journal_is_none() -> None:
    store = _store()
    for i in range(JOURNAL_SIZE + 1):
        _txt(store, f"_acme-challenge.h{i}.x.test", "v")
    assert ixfr_rrsets(store, ZONE, 1) is None  # the first delta fell out of the journal
    assert ixfr_rrsets(store, ZONE, 2) is not None


def _handler(store: RecordStore) -> DnsHandler:
    keys = make_keyring([parse_key(f"xfr:{SECRET}"), parse_key(f"update:{OTHER}")])
    return DnsHandler(store, keys, allow_transfer=[parse_name("xfr")])


def _query(zone: dns.zone.Zone, serial: int | None, key: tuple[str, str] | None) -> Query:
    query, _ = dns.xfr.make_query(zone, serial=serial)
    if key is not None:
        query.use_tsig(dns.tsigkeyring.from_text({key[0]: key[1]}), key[0])
    return query


def _transfer(
    handler: DnsHandler, zone: dns.zone.Zone, serial: int | None, key: tuple[str, str] | None
) -> list[bytes] | None:
    return handler.handle_stream(_query(zone, serial, key).to_wire())


def _read(zone: dns.zone.Zone, query: Query, wires: list[bytes], serial: int | None) -> None:
    """Feed the answers to `query` (sent signed) to dnspython's inbound transfer, as a
    secondary would, checking each message's TSIG in the chain."""
    keyring = dns.tsigkeyring.from_text({"xfr": SECRET})
    with dns.xfr.Inbound(zone, query.question[0].rdtype, serial) as inbound:
        ctx = None
        for i, wire in enumerate(wires):
            message = dns.message.from_wire(
                wire, keyring=keyring, request_mac=query.mac, multi=True, tsig_ctx=ctx,
                one_rr_per_rrset=True, xfr=True, origin=zone.origin,
            )  # fmt: skip
            ctx = message.tsig_ctx
            done = inbound.process_message(message)
            assert done == (i == len(wires) - 1)


def test_a_signed_axfr_in_several_messages_then_an_ixfr() -> None:
    store = _store()
    for i in range(MANY):
        _txt(store, f"_acme-challenge.h{i}.x.test", f"v{i}".ljust(2000, "v"))
    handler = _handler(store)
    zone = dns.zone.Zone("x.test")
    query = _query(zone, None, ("xfr", SECRET))
    wires = handler.handle_stream(query.to_wire())
    assert wires is not None and len(wires) == 3
    _read(zone, query, wires, None)
    assert len(zone.nodes) == MANY + 2  # apex, ns1, the TXT names
    before = store.serial

    _txt(store, "_acme-challenge.new.x.test", "new")
    store.clear(parse_name("_acme-challenge.h0.x.test"), dns.rdatatype.TXT)
    query = _query(zone, before, ("xfr", SECRET))
    wires = handler.handle_stream(query.to_wire())
    assert wires is not None and len(wires) == 1
    _read(zone, query, wires, before)
    soa = zone.get_soa()
    assert soa is not None and soa.serial == store.serial
    assert zone.get_node("_acme-challenge.new") is not None
    assert zone.get_node("_acme-challenge.h0") is None


@pytest.mark.parametrize("key", [None, ("update", OTHER)])
def test_a_transfer_without_an_allowed_key_is_refused(key: tuple[str, str] | None) -> None:
    wires = _transfer(_handler(_store()), dns.zone.Zone("x.test"), None, key)
    assert wires is not None and len(wires) == 1
    reply = dns.message.from_wire(wires[0], keyring=False)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer


def test_a_transfer_with_a_wrong_secret_is_notauth() -> None:
    wires = _transfer(_handler(_store()), dns.zone.Zone("x.test"), None, ("xfr", OTHER))
    assert wires is not None
    assert dns.message.from_wire(wires[0], keyring=False).rcode() == dns.rcode.NOTAUTH


def test_allow_transfer_must_name_a_known_key() -> None:
    with pytest.raises(ValueError, match="--allow-transfer"):
        DnsHandler(_store(), {}, allow_transfer=[dns.name.from_text("nokey")])

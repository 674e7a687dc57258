"""RFC 2136 UPDATE rules applied to the store (the TSIG check is the handler's)."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.update
import pytest

from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name, txt_value
from acmekit.dns.update import apply_update

NAME = "_acme-challenge.x.test."


def fresh() -> RecordStore:
    store = RecordStore(("x.test",))
    store.add(parse_name(NAME), make_rdata(RecordType.TXT, "old"))
    store.add(parse_name("www.x.test"), make_rdata(RecordType.A, "192.0.2.1"))
    return store


def values(store: RecordStore, name: str = NAME) -> list[str]:
    return sorted(txt_value(rd) for rd in store.rdatas(parse_name(name), dns.rdatatype.TXT))


def msg(zone: str = "x.test.") -> dns.update.UpdateMessage:
    return dns.update.UpdateMessage(zone)


def test_add_and_delete_one_value() -> None:
    store = fresh()
    add = msg()
    add.add(NAME, 60, "TXT", '"new"')
    assert apply_update(store, add) == dns.rcode.NOERROR
    assert values(store) == ["new", "old"]
    delete = msg()
    delete.delete(NAME, "TXT", '"old"')
    assert apply_update(store, delete) == dns.rcode.NOERROR
    assert values(store) == ["new"]


def test_delete_rrset_and_delete_name_touch_only_txt() -> None:
    store = fresh()
    store.add(parse_name("www.x.test"), make_rdata(RecordType.TXT, "t"))
    by_type = msg()
    by_type.delete(NAME, "TXT")
    assert apply_update(store, by_type) == dns.rcode.NOERROR and values(store) == []
    by_name = msg()
    by_name.delete("www.x.test.")
    assert apply_update(store, by_name) == dns.rcode.NOERROR
    assert values(store, "www.x.test.") == []
    assert store.rdatas(parse_name("www.x.test"), dns.rdatatype.A)


@pytest.mark.parametrize(
    ("zone", "name", "rtype", "value", "rcode"),
    [
        ("other.test.", "a.other.test.", "TXT", '"v"', dns.rcode.NOTAUTH),
        ("sub.x.test.", "a.sub.x.test.", "TXT", '"v"', dns.rcode.NOTAUTH),
        ("x.test.", "a.elsewhere.test.", "TXT", '"v"', dns.rcode.NOTZONE),
        ("x.test.", "a.x.test.", "A", "192.0.2.2", dns.rcode.REFUSED),
        ("x.test.", "a.x.test.", "CNAME", "b.x.test.", dns.rcode.REFUSED),
    ],
)
def test_refusals(zone: str, name: str, rtype: str, value: str, rcode: dns.rcode.Rcode) -> None:
    store = fresh()
    before = store.snapshot()
    update = msg(zone)
    update.add(name, 60, rtype, value)
    assert apply_update(store, update) == rcode
    assert store.snapshot() == before


def test_nothing_is_applied_when_one_rr_is_refused() -> None:
    store = fresh()
    update = msg()
    update.add(NAME, 60, "TXT", '"fine"')
    update.add("a.x.test.", 60, "A", "192.0.2.2")
    assert apply_update(store, update) == dns.rcode.REFUSED
    assert values(store) == ["old"]


@pytest.mark.parametrize(
    ("build", "rcode"),
    [
        (lambda u: u.present(NAME), dns.rcode.NOERROR),
        (lambda u: u.present("nothing.x.test."), dns.rcode.NXDOMAIN),
        (lambda u: u.present(NAME, "TXT"), dns.rcode.NOERROR),
        (lambda u: u.present("www.x.test.", "TXT"), dns.rcode.NXRRSET),
        (lambda u: u.absent(NAME), dns.rcode.YXDOMAIN),
        (lambda u: u.absent("nothing.x.test."), dns.rcode.NOERROR),
        (lambda u: u.absent(NAME, "TXT"), dns.rcode.YXRRSET),
        (lambda u: u.absent("www.x.test.", "TXT"), dns.rcode.NOERROR),
        (lambda u: u.present(NAME, "TXT", '"old"'), dns.rcode.NOERROR),
        (lambda u: u.present(NAME, "TXT", '"other"'), dns.rcode.NXRRSET),
        (lambda u: u.present("a.elsewhere.test."), dns.rcode.NOTZONE),
    ],
)
def test_prerequisites(build: object, rcode: dns.rcode.Rcode) -> None:
    store = fresh()
    update = msg()
    build(update)  # type: ignore[operator]
    update.add(NAME, 60, "TXT", '"new"')
    for parsed in (False, True):  # as built in memory, and as the server parses it
        copy = fresh()
        wire = dns.message.from_wire(update.to_wire()) if parsed else update
        assert isinstance(wire, dns.update.UpdateMessage)
        assert apply_update(copy, wire) == rcode
    assert apply_update(store, update) == rcode
    assert ("new" in values(store)) == (rcode == dns.rcode.NOERROR)


def test_implicit_zone_accepts_updates_at_its_apex_only() -> None:
    store = RecordStore()
    good = msg("x.test.")
    good.add("_acme-challenge.a.x.test.", 60, "TXT", '"v"')
    assert apply_update(store, good) == dns.rcode.NOERROR
    bad = msg("a.x.test.")
    bad.add("_acme-challenge.a.x.test.", 60, "TXT", '"w"')
    assert apply_update(store, bad) == dns.rcode.NOTAUTH
    assert dns.name.from_text("_acme-challenge.a.x.test.") in store.names()

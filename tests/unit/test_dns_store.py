"""The record store's resolution rules, without sockets."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from acmekit.dns.store import (
    RecordStore,
    RecordType,
    caa_rdata,
    implicit_zone,
    make_rdata,
    parse_name,
    txt_value,
)
from acmekit.protocol.problems import AcmeError, ProblemType

T = dns.rdatatype


def n(text: str) -> dns.name.Name:
    return parse_name(text)


def texts(rrsets: tuple[object, ...]) -> list[str]:
    return sorted(str(r) for r in rrsets)


def store_with(zones: tuple[str, ...] = ("x.test",), **kw: str) -> RecordStore:
    store = RecordStore(zones, **kw)  # type: ignore[arg-type]
    store.add(n("www.x.test"), make_rdata(RecordType.A, "192.0.2.1"))
    store.add(n("www.x.test"), make_rdata(RecordType.AAAA, "2001:db8::1"))
    store.add(n("_acme-challenge.x.test"), make_rdata(RecordType.TXT, "one"))
    store.add(n("_acme-challenge.x.test"), make_rdata(RecordType.TXT, "two"))
    store.add(n("alias.x.test"), make_rdata(RecordType.CNAME, "www.x.test"))
    store.add(n("x.test"), caa_rdata("issue", "ca.test"))
    return store


def test_exact_match_answers_each_type() -> None:
    store = store_with()
    res = store.resolve(n("www.x.test"), T.A)
    assert res.rcode == dns.rcode.NOERROR and res.authoritative
    assert texts(res.answer) == ["www.x.test. 0 IN A 192.0.2.1"]
    assert "2001:db8::1" in texts(store.resolve(n("www.x.test"), T.AAAA).answer)[0]
    caa = store.resolve(n("x.test"), T.CAA).answer
    assert texts(caa) == ['x.test. 0 IN CAA 0 issue "ca.test"']


def test_multiple_txt_values_are_one_rrset() -> None:
    res = store_with().resolve(n("_acme-challenge.x.test"), T.TXT)
    assert len(res.answer) == 1
    assert sorted(txt_value(rd) for rd in res.answer[0]) == ["one", "two"]


def test_names_are_case_insensitive_and_keep_the_asked_case() -> None:
    res = store_with().resolve(n("WWW.X.Test"), T.A)
    assert res.answer[0].name.to_text() == "WWW.X.Test."
    assert len(res.answer[0]) == 1


def test_nxdomain_carries_the_soa() -> None:
    res = store_with().resolve(n("missing.x.test"), T.A)
    assert res.rcode == dns.rcode.NXDOMAIN
    assert res.answer == ()
    assert res.authority[0].rdtype == T.SOA and res.authority[0].name == n("x.test")


def test_nodata_is_noerror_with_soa() -> None:
    res = store_with().resolve(n("www.x.test"), T.TXT)
    assert res.rcode == dns.rcode.NOERROR and res.answer == ()
    assert res.authority[0].rdtype == T.SOA


def test_empty_non_terminal_exists() -> None:
    store = store_with()
    store.add(n("a.b.c.x.test"), make_rdata(RecordType.TXT, "deep"))
    for ent in ("b.c.x.test", "c.x.test"):
        res = store.resolve(n(ent), T.A)
        assert res.rcode == dns.rcode.NOERROR and res.answer == ()


def test_wildcard_answers_but_not_for_an_empty_non_terminal() -> None:
    store = store_with()
    store.add(n("*.x.test"), make_rdata(RecordType.A, "192.0.2.9"))
    res = store.resolve(n("anything.x.test"), T.A)
    assert texts(res.answer) == ["anything.x.test. 0 IN A 192.0.2.9"]
    store.add(n("_acme-challenge.sub.x.test"), make_rdata(RecordType.TXT, "v"))
    blocked = store.resolve(n("sub.x.test"), T.A)
    assert blocked.rcode == dns.rcode.NOERROR and blocked.answer == ()
    # below an existing name the wildcard of that name's zone no longer applies either
    assert store.resolve(n("q.www.x.test"), T.A).rcode == dns.rcode.NXDOMAIN


def test_cname_is_chased_inside_our_zones() -> None:
    res = store_with().resolve(n("alias.x.test"), T.A)
    assert [r.rdtype for r in res.answer] == [T.CNAME, T.A]
    cname_only = store_with().resolve(n("alias.x.test"), T.CNAME)
    assert [r.rdtype for r in cname_only.answer] == [T.CNAME]


def test_cname_to_missing_name_is_nxdomain_and_loops_stop() -> None:
    store = store_with()
    store.add(n("dangling.x.test"), make_rdata(RecordType.CNAME, "nowhere.x.test"))
    res = store.resolve(n("dangling.x.test"), T.A)
    assert res.rcode == dns.rcode.NXDOMAIN and res.answer[0].rdtype == T.CNAME
    store.add(n("l1.x.test"), make_rdata(RecordType.CNAME, "l2.x.test"))
    store.add(n("l2.x.test"), make_rdata(RecordType.CNAME, "l1.x.test"))
    loop = store.resolve(n("l1.x.test"), T.A)
    assert loop.rcode == dns.rcode.NOERROR and len(loop.answer) == 2


def test_cname_out_of_our_zones_stops_the_chain() -> None:
    store = store_with()
    store.add(n("out.x.test"), make_rdata(RecordType.CNAME, "elsewhere.example"))
    res = store.resolve(n("out.x.test"), T.TXT)
    assert [r.rdtype for r in res.answer] == [T.CNAME] and res.rcode == dns.rcode.NOERROR


def test_apex_has_soa_and_ns_and_ns_host_has_address() -> None:
    store = store_with()
    soa = store.resolve(n("x.test"), T.SOA)
    assert soa.answer[0].rdtype == T.SOA
    ns = store.resolve(n("x.test"), T.NS)
    assert str(ns.answer[0][0]) == "ns1.x.test."
    assert texts(ns.additional) == ["ns1.x.test. 0 IN A 127.0.0.1"]


def test_serial_grows_on_change() -> None:
    store = store_with()
    before = store.resolve(n("x.test"), T.SOA).answer[0][0].serial
    store.add(n("new.x.test"), make_rdata(RecordType.TXT, "v"))
    assert store.resolve(n("x.test"), T.SOA).answer[0][0].serial == before + 1


def test_outside_explicit_zones_is_refused() -> None:
    res = store_with().resolve(n("other.test"), T.A)
    assert res.rcode == dns.rcode.REFUSED and not res.authoritative


def test_deepest_zone_wins() -> None:
    store = RecordStore(("x.test", "sub.x.test"))
    res = store.resolve(n("a.sub.x.test"), T.A)
    assert res.authority[0].name == n("sub.x.test")


def test_implicit_zones_are_the_last_two_labels() -> None:
    assert implicit_zone(n("_acme-challenge.a.x.test")) == n("x.test")
    assert implicit_zone(n("test")) == n("test")
    store = RecordStore()
    store.add(n("_acme-challenge.a.x.test"), make_rdata(RecordType.TXT, "v"))
    assert store.resolve(n("x.test"), T.SOA).answer[0].name == n("x.test")
    nodata = store.resolve(n("_acme-challenge.a.x.test"), T.SOA)
    assert nodata.answer == () and nodata.authority[0].name == n("x.test")
    assert store.resolve(n("nothing.y.test"), T.A).rcode == dns.rcode.NXDOMAIN


def test_default_addresses_answer_any_unknown_name() -> None:
    store = RecordStore(default_ipv4="127.0.0.1", default_ipv6="::1")
    a = store.resolve(n("anything.example.test"), T.A)
    assert texts(a.answer) == ["anything.example.test. 0 IN A 127.0.0.1"]
    aaaa = store.resolve(n("anything.example.test"), T.AAAA)
    assert texts(aaaa.answer) == ["anything.example.test. 0 IN AAAA ::1"]
    txt = store.resolve(n("anything.example.test"), T.TXT)
    assert txt.rcode == dns.rcode.NOERROR and txt.answer == ()
    store.add(n("fixed.example.test"), make_rdata(RecordType.A, "192.0.2.5"))
    assert "192.0.2.5" in texts(store.resolve(n("fixed.example.test"), T.A).answer)[0]
    store.set_default(4, None)
    assert store.resolve(n("anything.example.test"), T.A).answer == ()


def test_any_query_returns_every_rrset() -> None:
    res = store_with().resolve(n("www.x.test"), T.ANY)
    assert sorted(r.rdtype for r in res.answer) == [T.A, T.AAAA]


def test_remove_clear_and_keep_latest() -> None:
    store = store_with()
    name = n("_acme-challenge.x.test")
    assert store.remove(name, make_rdata(RecordType.TXT, "one"))
    assert not store.remove(name, make_rdata(RecordType.TXT, "one"))
    store.add(name, make_rdata(RecordType.TXT, "three"))
    store.keep_latest(name, T.TXT, 1)
    assert [txt_value(rd) for rd in store.rdatas(name, T.TXT)] == ["three"]
    assert store.clear(name, T.TXT) and not store.clear(name, T.TXT)
    assert store.resolve(name, T.TXT).rcode == dns.rcode.NXDOMAIN


def test_observers_are_told_of_changes() -> None:
    store = RecordStore()
    calls: list[int] = []
    store.on_change.append(lambda: calls.append(store.serial))
    store.add(n("a.x.test"), make_rdata(RecordType.TXT, "v"))
    store.add(n("a.x.test"), make_rdata(RecordType.TXT, "v"))  # duplicate: no change
    assert calls == [2]


def test_snapshot_round_trip() -> None:
    store = store_with()
    copy = RecordStore(("x.test",))
    copy.restore(store.snapshot())
    assert copy.snapshot() == store.snapshot()
    assert texts(copy.resolve(n("alias.x.test"), T.A).answer) == texts(
        store.resolve(n("alias.x.test"), T.A).answer
    )


def test_long_txt_is_split_into_strings() -> None:
    rdata = make_rdata(RecordType.TXT, "a" * 600)
    assert txt_value(rdata) == "a" * 600


@pytest.mark.parametrize(
    ("rtype", "value"),
    [
        (RecordType.A, "not-an-ip"),
        (RecordType.A, "::1"),
        (RecordType.AAAA, "127.0.0.1"),
        (RecordType.CNAME, ""),
        (RecordType.CNAME, "a" * 64 + ".test"),
        (RecordType.CAA, "nonsense"),
    ],
)
def test_bad_values_are_malformed_problems(rtype: RecordType, value: str) -> None:
    with pytest.raises(AcmeError) as info:
        make_rdata(rtype, value)
    assert info.value.problem.type == ProblemType.MALFORMED


def test_bad_caa_tag_is_malformed() -> None:
    with pytest.raises(AcmeError):
        caa_rdata("is sue", "x")


def test_empty_non_terminals_follow_removals() -> None:
    store = RecordStore(("x.test",))
    deep, sibling = n("a.b.x.test"), n("c.b.x.test")
    store.add(deep, make_rdata(RecordType.TXT, "1"))
    store.add(sibling, make_rdata(RecordType.TXT, "2"))
    store.clear(deep, T.TXT)
    assert store.resolve(n("b.x.test"), T.A).rcode == dns.rcode.NOERROR
    store.remove(sibling, make_rdata(RecordType.TXT, "2"))
    assert store.resolve(n("b.x.test"), T.A).rcode == dns.rcode.NXDOMAIN

"""The store's wildcard search (RFC 4592): which `*.<closest encloser>` answers a name
the zone does not hold, and what finding it costs.

The closest encloser (§3.3.1) is the deepest ancestor of the name that exists: stored
data, an empty non-terminal above stored data (RFC 8020), the zone's apex or its NS host.
Checked here against that definition, walked name by name, for every name under a set
of stored names. Its cost is counted in dnspython names built and hashed (each of those
walks all of a name's labels in Python): a question of 125 labels costs as many as one
of 8, where walking up ancestor by ancestor built and hashed a name per label (about
31,000 label steps for one query of a 125-label name). So does writing a record at a
long name, whose ancestors are counted as empty non-terminals by their wire keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name

T = dns.rdatatype
ZONE = parse_name("x.test")
STORED = (
    "*.x.test",
    "a.b.c.x.test",  # b.c.x.test and c.x.test are empty non-terminals
    "*.c.x.test",
    "*.b.c.x.test",
    "d.x.test",
    "*.ns1.x.test",  # below the NS host, which exists with its synthesized address
    "*.deep.e.x.test",  # deep.e.x.test and e.x.test exist only as ancestors of it
)


def store() -> RecordStore:
    held = RecordStore(["x.test"])
    for owner in STORED:
        held.add(parse_name(owner), make_rdata(RecordType.TXT, owner))
    return held


def defined_encloser(name: dns.name.Name) -> dns.name.Name:
    """RFC 4592 §3.3.1's closest encloser, by its definition: the first ancestor that
    holds data, has a stored name below it, or is the apex or the NS host."""
    stored = [parse_name(s) for s in STORED]
    ns_host = parse_name("ns1.x.test")
    ancestor = name.parent()
    while ancestor not in (ZONE, ns_host):
        if any(s.is_subdomain(ancestor) for s in stored):
            return ancestor
        ancestor = ancestor.parent()
    return ancestor


def questions() -> Iterator[dns.name.Name]:
    """Names absent from the store at every depth below each stored name and each
    ancestor of one, down to 30 labels."""
    tops = {parse_name(s).parent() for s in STORED} | {parse_name(s) for s in STORED}
    tops |= {t.parent() for t in tops if t.is_subdomain(ZONE) and t != ZONE}
    for top in sorted(tops):
        for depth in range(1, 30 - len(top) + 1):
            yield dns.name.Name((*(b"q%d" % i for i in range(depth)), *top.labels))


def test_the_wildcard_of_the_closest_encloser_answers() -> None:
    held = store()
    asked = 0
    for name in questions():
        if name.labels[0] == b"*" or name.to_text() in {s + "." for s in STORED}:
            continue
        encloser = defined_encloser(name)
        source = dns.name.Name((b"*", *encloser.labels)).to_text().rstrip(".")
        res = held.resolve(name, T.TXT)
        if source in STORED:
            assert res.rcode == dns.rcode.NOERROR, name
            assert [rd.to_text() for rrset in res.answer for rd in rrset] == [f'"{source}"']
        else:
            assert res.rcode == dns.rcode.NXDOMAIN and res.answer == (), name
        asked += 1
    assert asked > 300


def test_the_wildcard_search_without_explicit_zones() -> None:
    held = RecordStore()  # a name's zone is its last two labels
    held.add(parse_name("*.x.test"), make_rdata(RecordType.TXT, "top"))
    held.add(parse_name("*.b.x.test"), make_rdata(RecordType.TXT, "b"))
    held.add(parse_name("a.b.x.test"), make_rdata(RecordType.TXT, "a"))
    expected = {"q.x.test": '"top"', "q.b.x.test": '"b"', "q.q.b.x.test": '"b"'}
    expected |= {"q.a.b.x.test": None, "q.q.x.test": '"top"'}
    for text, value in expected.items():
        res = held.resolve(parse_name(text), T.TXT)
        assert [rd.to_text() for rrset in res.answer for rd in rrset] == (
            [value] if value else []
        ), text


@contextmanager
def counting(method: str) -> Iterator[list[int]]:
    """Count calls of dnspython's `Name.<method>` within the block."""
    calls = [0]
    original: Callable[..., Any] = getattr(dns.name.Name, method)

    def counted(self: dns.name.Name, *args: Any) -> Any:
        calls[0] += 1
        return original(self, *args)

    setattr(dns.name.Name, method, counted)
    try:
        yield calls
    finally:
        setattr(dns.name.Name, method, original)


def name_work(held: RecordStore, name: dns.name.Name) -> tuple[int, int]:
    """(Names built, Names hashed) by one question for `name`."""
    with counting("__init__") as built, counting("__hash__") as hashed:
        held.resolve(name, T.TXT)
    return built[0], hashed[0]


@pytest.mark.parametrize("under", ["x.test", "c.x.test", "deep.e.x.test"])
def test_a_long_name_costs_no_more_names_than_a_short_one(under: str) -> None:
    held = store()
    work = {
        labels: name_work(held, parse_name("a." * (labels - 3 - under.count(".")) + under))
        for labels in (8, 64, 125)
    }
    assert work[8] == work[64] == work[125], work


def write_work(labels: int) -> tuple[int, int]:
    """(Names built, Names hashed) by adding and removing one record at a name of
    `labels` labels: its empty non-terminals are counted by wire key, not by a Name of
    each ancestor."""
    held = RecordStore(["x.test"])
    name = parse_name("a." * (labels - 3) + "x.test")
    record = make_rdata(RecordType.TXT, "v")
    with counting("__init__") as built, counting("__hash__") as hashed:
        held.add(name, record)
        held.remove(name, record)
    return built[0], hashed[0]


def test_a_long_name_is_written_with_no_more_names_than_a_short_one() -> None:
    work = {labels: write_work(labels) for labels in (8, 64, 125)}
    assert work[8] == work[64] == work[125], work

"""Several DNS record stores sharing one database (acmekit.dns.shared), on SQLite and
PostgreSQL: a change made through one is applied by the others under the same serial,
a store that starts later loads the records and the journal (so it answers IXFR), one
that fell behind the kept changes reloads whole, and the migrated tables match the
declared ones."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dns.name
import dns.rdatatype
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from acmekit import migrate
from acmekit.dns import shared
from acmekit.dns.schema import metadata
from acmekit.dns.shared import SharedStore
from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name, txt_value
from acmekit.dns.xfr import ixfr_rrsets

ZONE = parse_name("x.test")
NAME = parse_name("_acme-challenge.a.x.test")


@pytest.fixture
def opened(db_url: str) -> Iterator[list[SharedStore]]:
    found: list[SharedStore] = []
    yield found
    for s in found:
        s.close()


def _open(db_url: str, opened: list[SharedStore]) -> RecordStore:
    store = RecordStore(["x.test"])
    opened.append(SharedStore(db_url, store))
    return store


def _txt(store: RecordStore, name: dns.name.Name = NAME) -> list[str]:
    return sorted(txt_value(rd) for rd in store.rdatas(name, dns.rdatatype.TXT))


def test_a_change_through_one_reaches_the_other(db_url: str, opened: list[SharedStore]) -> None:
    one, two = _open(db_url, opened), _open(db_url, opened)
    start = one.serial
    assert two.serial == start >= time.time() - 600  # a fresh database starts at the time
    assert one.add(NAME, make_rdata(RecordType.TXT, "first"))
    assert _txt(one) == ["first"] and _txt(two) == []
    assert opened[1].catch_up()
    assert _txt(two) == ["first"] and two.serial == one.serial == start + 1

    assert two.add(NAME, make_rdata(RecordType.TXT, "second"))
    two.keep_latest(NAME, dns.rdatatype.TXT, 1)  # acme-dns's rule, in order of addition
    assert _txt(one) == ["first"]  # not looked yet: "first" still there, here
    # a write is decided on the database: "first" is gone there, so it is added again
    assert one.add(NAME, make_rdata(RecordType.TXT, "first"))
    opened[1].catch_up()
    assert _txt(one) == _txt(two) == ["first", "second"]
    assert one.serial == two.serial == start + 4
    assert not opened[0].catch_up()  # nothing new


def test_a_store_started_later_has_the_records_and_the_journal(
    db_url: str, opened: list[SharedStore]
) -> None:
    one = _open(db_url, opened)
    start = one.serial
    one.add(NAME, make_rdata(RecordType.TXT, "a"))
    one.add(parse_name("_acme-challenge.b.x.test"), make_rdata(RecordType.TXT, "b"))
    one.clear(NAME, dns.rdatatype.TXT)
    late = _open(db_url, opened)
    assert late.serial == one.serial == start + 3
    assert _txt(late, parse_name("_acme-challenge.b.x.test")) == ["b"] and _txt(late) == []
    found = ixfr_rrsets(late, ZONE, start)
    assert found is not None and len(found) == 2 + 3 * 2 + 3  # SOA ends, 3 deltas, records


def test_a_store_behind_the_kept_changes_reloads(
    db_url: str, opened: list[SharedStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared, "KEEP", 2)
    one, two = _open(db_url, opened), _open(db_url, opened)
    start = one.serial
    for i in range(5):
        one.add(parse_name(f"_acme-challenge.h{i}.x.test"), make_rdata(RecordType.TXT, "v"))
    assert opened[1].catch_up()
    assert two.serial == one.serial == start + 5
    assert sorted(two.names()) == sorted(one.names())
    assert ixfr_rrsets(two, ZONE, start) is None  # reloaded: no journal back to the start


def test_the_migrated_tables_match_the_declared_ones(
    db_url: str, opened: list[SharedStore]
) -> None:
    _open(db_url, opened)
    engine = opened[0].engine
    assert migrate.current(engine, migrate.DNS) == migrate.head(migrate.DNS)
    with engine.connect() as conn:
        opts = {"version_table": migrate.DNS.version_table}
        context = MigrationContext.configure(conn, opts=opts)
        diff = list(compare_metadata(context, metadata))
    assert diff == []

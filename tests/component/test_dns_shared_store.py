"""Several DNS record stores sharing one database (acmekit.dns.shared), on SQLite and
PostgreSQL: a change made through one is applied by the others under the same serial,
a store that starts later loads the records and the journal (so it answers IXFR), one
that fell behind the kept changes reloads whole, and the migrated tables match the
declared ones."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

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


def test_two_processes_adding_the_same_record_at_once_store_it_once(
    db_url: str, opened: list[SharedStore]
) -> None:
    """Both writers decide on a view caught up before either writes (held there by a
    barrier, the window made wide): both see the record absent and both write it. The
    unique digest keeps one row, the second write changes nothing and takes no serial,
    and every store, and one started afterwards, holds the record once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import sqlalchemy as sa

    from acmekit.dns.schema import records

    stores = [_open(db_url, opened), _open(db_url, opened)]
    both_decided = threading.Barrier(2)
    for shared_store in opened:
        caught_up = shared_store.refresh

        def refresh(caught_up: Callable[[], None] = caught_up) -> None:
            caught_up()
            both_decided.wait(timeout=30)

        shared_store.store.refresh = refresh
    start = stores[0].serial
    rdata = make_rdata(RecordType.TXT, "raced")
    with ThreadPoolExecutor(max_workers=2) as pool:
        added = list(pool.map(lambda s: s.add(NAME, rdata), stores))
    assert added == [True, True]  # each decided to add it
    with opened[0].engine.connect() as c:
        rows = c.execute(sa.select(records).where(records.c.rdata == rdata.to_text())).all()
    assert len(rows) == 1
    for shared_store in opened:
        shared_store.catch_up()
    assert _txt(stores[0]) == _txt(stores[1]) == ["raced"]
    assert stores[0].serial == stores[1].serial == start + 1
    late = _open(db_url, opened)
    assert _txt(late) == ["raced"]
    # and a removal by both at once is one change too
    for shared_store in opened[:2]:
        shared_store.catch_up()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda s: s.remove(NAME, rdata), stores))
    opened[2].catch_up()
    assert _txt(late) == [] and late.serial == start + 2


def test_the_unique_records_migration_drops_stored_duplicates(db_url: str) -> None:
    """Duplicates left by the race before dns revision 0002 are dropped by it (the
    earliest row kept), and it goes down and up again."""
    import sqlalchemy as sa

    from acmekit.database import create_engine

    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, migrate.DNS, "0001")
        old = sa.table(
            "dns_records",
            sa.column("seq", sa.BigInteger),
            sa.column("name", sa.String),
            sa.column("rtype", sa.String),
            sa.column("rdata", sa.Text),
        )
        row = {"name": "_acme-challenge.a.x.test.", "rtype": "TXT", "rdata": '"twice"'}
        with engine.begin() as c:
            c.execute(old.insert(), [{"seq": n, **row} for n in (1, 2)])
            c.execute(old.insert().values(seq=3, **{**row, "rdata": '"once"'}))
        migrate.upgrade(engine, migrate.DNS)
        with engine.connect() as c:
            kept = c.execute(sa.select(old.c.seq, old.c.rdata).order_by(old.c.seq)).all()
        assert [tuple(r) for r in kept] == [(1, '"twice"'), (3, '"once"')]
        migrate.downgrade(engine, migrate.DNS, "0001")
        migrate.upgrade(engine, migrate.DNS)
        assert migrate.current(engine, migrate.DNS) == migrate.head(migrate.DNS) == "0003"
    finally:
        engine.dispose()

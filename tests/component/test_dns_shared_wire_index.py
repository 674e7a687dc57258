"""The wire index (pre-rendered RRsets and the count of stored names below each name,
`WireIndex.above`) stays that of the records after many UPDATEs through two processes
sharing one database: names in mixed case and with binary labels, deletions of RRsets
and of names, and UPDATEs whose prerequisites fail and whose transaction is rolled back.
Each process's index equals one rebuilt from its records, and one loaded afresh."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.rcode
import dns.rdatatype
import dns.update
import pytest

from acmekit.dns.shared import SharedStore
from acmekit.dns.store import RecordStore, WireIndex
from acmekit.dns.update import apply_update
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

ZONE = dns.name.from_text("idx.test")
LABELS = [b"a", b"A", b"b", b"*", b"a.b", b"\xc1", b"\xe1", b"\x00", b"_acme-challenge"]
STEPS = 150


@pytest.fixture(params=BACKEND_PARAMS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[SharedStore]]:
    with fresh_database(request.param, tmp_path, "dns.db", prefix="acmekit_dns") as url:
        opened = [SharedStore(url, RecordStore(["idx.test"]), poll=3600) for _ in range(2)]
        yield opened
        for s in opened:
            s.close()


def index(store: RecordStore) -> tuple[object, dict[bytes, int]]:
    return store.wire.rrsets, dict(store.wire.above)


def rebuilt(store: RecordStore) -> tuple[object, dict[bytes, int]]:
    fresh = WireIndex(store.ttl)
    for name in store.names():
        fresh.put(name, {t: store.rdatas(name, t) for t in store.types_at(name)})
    return fresh.rrsets, dict(fresh.above)


def an_update(rng: random.Random) -> dns.update.UpdateMessage:
    message = dns.update.UpdateMessage(ZONE)
    for _ in range(rng.randint(1, 4)):
        labels = [rng.choice(LABELS) for _ in range(rng.randint(1, 3))]
        name = dns.name.Name((*labels, *ZONE.labels))
        value = rng.choice(["one", "two"])
        roll = rng.random()
        if roll < 0.1:
            message.present(name)  # fails when absent: nothing applied
        elif roll < 0.2:
            message.absent(name)  # fails when present: nothing applied
        elif roll < 0.6:
            message.add(name, 60, dns.rdatatype.TXT, value)
        elif roll < 0.85:
            message.delete(name, dns.rdatatype.TXT, value)
        else:
            message.delete(name)
    return message


def test_the_index_stays_that_of_the_records(pair: list[SharedStore]) -> None:
    rng = random.Random(8020)
    outcomes: set[dns.rcode.Rcode] = set()
    for step in range(STEPS):
        outcomes.add(apply_update(pair[step % 2].store, an_update(rng)))
        if step % 10 == 9:
            for shared in pair:
                shared.catch_up()
                assert index(shared.store) == rebuilt(shared.store), step
            assert index(pair[0].store) == index(pair[1].store), step
    assert {dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN} <= outcomes
    assert pair[0].store.names()  # something is left to compare
    pair[1].load()
    assert index(pair[0].store) == index(pair[1].store)

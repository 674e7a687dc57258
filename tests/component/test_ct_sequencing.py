"""The log in process, on SQLite and PostgreSQL: 300 entries in batches, their tiles at
two levels (full and partial) against hashes computed from the entries, a fresh head
without new entries, and the lease kept by one holder until it expires."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.ct import merkle
from acmekit.ct.log import CtLog, LogSettings, load_or_create_key, now_ms
from acmekit.ct.store import CtStore
from acmekit.ct.tiles import TileReader
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS


@pytest.fixture(params=BACKEND_PARAMS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CtLog, Issuer]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_database(request.param, tmp_path, "ct.db", prefix="acmekit_ct") as url:
        store = CtStore.from_url(url)
        settings = LogSettings(roots=(issuer.root_cert,), mmd=1.0, batch=64)
        yield CtLog(store, load_or_create_key(tmp_path), settings), issuer
        store.close()


def mth(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = merkle.split_point(len(hashes))
    return merkle.node_hash(mth(hashes[:k]), mth(hashes[k:]))


def test_three_hundred_entries_make_full_and_partial_tiles(log: tuple[CtLog, Issuer]) -> None:
    ctlog, issuer = log
    inter = der(issuer.intermediate_cert)
    for i in range(300):
        cert = leaf_certificate(issuer, f"e{i}.example", precert=i % 3 == 0)
        ctlog.add_chain([der(cert), inter], precert=i % 3 == 0)
    assert ctlog.sequence_once() == 300
    head = ctlog.sth().head
    assert head.tree_size == 300
    leaves = ctlog.entries(0, 299)
    assert [e.seq for e in leaves] == list(range(300))
    hashes = [merkle.leaf_hash(e.leaf_input) for e in leaves]
    assert mth(hashes) == head.root_hash

    tiles = TileReader(ctlog, "127.0.0.1:1")
    status, _, full = tiles.answer("/tile/0/000") or (0, "", b"")
    assert status == 200 and full == b"".join(hashes[:256])
    status, _, partial = tiles.answer("/tile/0/001.p/44") or (0, "", b"")
    assert status == 200 and partial == b"".join(hashes[256:])
    status, _, upper = tiles.answer("/tile/1/000.p/1") or (0, "", b"")
    assert status == 200 and upper == mth(hashes[:256])
    assert (tiles.answer("/tile/0/001") or (0,))[0] == 404
    assert (tiles.answer("/tile/0/001.p/45") or (0,))[0] == 404
    status, _, data = tiles.answer("/tile/data/001.p/44") or (0, "", b"")
    assert status == 200 and len(data) > 44 * 32

    # the proof of the last entry, from stored nodes, verifies against the head
    proof = ctlog.store.range_hashes(merkle.inclusion_ranges(299, 300))
    assert merkle.verify_inclusion(hashes[299], 299, 300, proof, head.root_hash)


def test_an_idle_log_signs_fresh_heads_and_keeps_its_lease(log: tuple[CtLog, Issuer]) -> None:
    ctlog, _ = log
    first = ctlog.sth()
    assert ctlog.sequence_once() == 0
    # with nothing new, a head half the MMD old is signed again, for the same tree
    ctlog.store.sequence(ctlog.sign_head, first.head.timestamp + 600, 64, 500)
    again = ctlog.sth()
    assert again.head.timestamp == first.head.timestamp + 600
    assert (again.head.tree_size, again.head.root_hash) == (0, merkle.EMPTY_ROOT)
    assert again.verify(ctlog.key.public_key())

    t = now_ms() + ctlog.lease_ms + 1  # after the lease sequence_once took has expired
    assert ctlog.store.take_lease("a", t, 1000)
    assert not ctlog.store.take_lease("b", t + 500, 1000)
    assert ctlog.store.take_lease("a", t + 900, 1000)  # renewed by its holder
    assert not ctlog.store.take_lease("b", t + 1800, 1000)
    assert ctlog.store.take_lease("b", t + 2000, 1000)  # expired: taken over
    assert ctlog.store.lease_holder() == "b"

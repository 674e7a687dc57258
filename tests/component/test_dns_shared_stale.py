"""A write through a process whose copy of the shared records is a poll behind is
decided on the database's records: an add of a record another process has just
removed is made (not dropped as a duplicate), a remove of a record another process
has just added removes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.rdatatype
import pytest

from acmekit.dns.shared import SharedStore
from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name, txt_value
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

NAME = parse_name("_acme-challenge.stale.x.test")


@pytest.fixture(params=BACKEND_PARAMS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[SharedStore]]:
    with fresh_database(request.param, tmp_path, "dns.db", prefix="acmekit_dns") as url:
        # a poll interval far longer than the test: only a write makes a store look
        opened = [SharedStore(url, RecordStore(["x.test"]), poll=3600) for _ in range(2)]
        yield opened
        for s in opened:
            s.close()


def _txt(shared: SharedStore) -> list[str]:
    return sorted(txt_value(rd) for rd in shared.store.rdatas(NAME, dns.rdatatype.TXT))


def test_an_add_after_another_process_removed_the_record_is_made(
    pair: list[SharedStore],
) -> None:
    one, two = pair
    token = make_rdata(RecordType.TXT, "token-1")
    assert one.store.add(NAME, token)
    two.catch_up()
    assert two.store.remove(NAME, token)  # `one` has not looked since
    assert one.store.add(NAME, token)  # a new challenge with the same value
    two.catch_up()
    assert _txt(one) == _txt(two) == ["token-1"]


def test_a_remove_after_another_process_added_the_record_removes_it(
    pair: list[SharedStore],
) -> None:
    one, two = pair
    token = make_rdata(RecordType.TXT, "token-2")
    assert two.store.add(NAME, token)  # `one` has not looked since
    assert one.store.remove(NAME, token)
    two.catch_up()
    assert _txt(one) == _txt(two) == []

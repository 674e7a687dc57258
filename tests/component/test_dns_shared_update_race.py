"""UPDATEs sent at once to two processes sharing one database are atomic with respect
to each other (RFC 2136 §3.7): of two UPDATEs each requiring that a TXT RRset not
exist and adding one, at most one is applied and the other answered YXRRSET."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.rcode
import dns.rdatatype
import dns.update
import pytest

from acmekit.dns.shared import SharedStore
from acmekit.dns.store import RecordStore, parse_name
from acmekit.dns.update import apply_update
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

ROUNDS = 40


@pytest.fixture(params=BACKEND_PARAMS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[SharedStore]]:
    with fresh_database(request.param, tmp_path, "dns.db", prefix="acmekit_dns") as url:
        # a poll interval far longer than the test: only an UPDATE makes a store look
        opened = [SharedStore(url, RecordStore(["race.test"]), poll=3600) for _ in range(2)]
        yield opened
        for s in opened:
            s.close()


def _claim(name: str, value: str) -> dns.update.UpdateMessage:
    message = dns.update.UpdateMessage("race.test")
    message.absent(name, dns.rdatatype.TXT)
    message.add(name, 60, dns.rdatatype.TXT, value)
    return message


def test_only_one_of_two_racing_conditional_updates_is_applied(
    pair: list[SharedStore],
) -> None:
    start = threading.Barrier(2)

    def send(index: int, name: str) -> dns.rcode.Rcode:
        start.wait()
        return apply_update(pair[index].store, _claim(name, f"v{index}"))

    with ThreadPoolExecutor(2) as pool:
        for round_ in range(ROUNDS):
            name = f"n{round_}.race.test."
            got = sorted(pool.map(send, [0, 1], [name, name]))
            assert got == [dns.rcode.NOERROR, dns.rcode.YXRRSET], (round_, got)
    pair[0].catch_up()
    pair[1].catch_up()
    for round_ in range(ROUNDS):
        name = parse_name(f"n{round_}.race.test")
        assert len(pair[0].store.rdatas(name, dns.rdatatype.TXT)) == 1
        assert pair[1].store.rdatas(name, dns.rdatatype.TXT) == pair[0].store.rdatas(
            name, dns.rdatatype.TXT
        )

"""The number of CRL shards a serving CA records at its start (crl.py, `record_shards`),
read back by `acmekit server certs revoke`; a record this release cannot read is none."""

from __future__ import annotations

import pytest

from acmekit.server.crl import SETTING, record_shards, recorded_shards
from acmekit.server.run import Assembly


def test_the_recorded_count_is_read_back(ca: Assembly) -> None:
    assert recorded_shards(ca.store) is None
    record_shards(ca.store, 8)
    assert recorded_shards(ca.store) == 8
    record_shards(ca.store, 2)  # the last process to start wins
    assert recorded_shards(ca.store) == 2


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"count": 8}', '{"shards": 0}', '{"shards": true}', '{"shards": "8"}'],
)
def test_a_record_this_release_cannot_read_is_none(ca: Assembly, text: str) -> None:
    ca.store.accounts.put_setting(SETTING, text)
    assert recorded_shards(ca.store) is None

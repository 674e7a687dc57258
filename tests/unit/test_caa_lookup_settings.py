"""`[caa] lookups_per_account`: one account's share of the CAA lookups in flight, in
bounds at load, and given to the checker."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.server.caa import LOOKUPS_IN_FLIGHT, LOOKUPS_PER_ACCOUNT
from acmekit.server.config import load_config


def _load(tmp_path: Path, text: str) -> int:
    path = tmp_path / "ca.toml"
    path.write_text(text)
    return load_config(path, {}).caa.lookups_per_account


def test_the_share_is_read_and_defaults_to_a_part_of_the_slots(tmp_path: Path) -> None:
    assert _load(tmp_path, "[caa]\nlookups_per_account = 8\n") == 8
    assert _load(tmp_path, "") == LOOKUPS_PER_ACCOUNT < LOOKUPS_IN_FLIGHT


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "caa.lookups_per_account = 0: it must be a whole number from 1 to 256"),
        ("-3", "caa.lookups_per_account = -3: it must be a whole number from 1 to 256"),
        ("257", "caa.lookups_per_account = 257: it must be a whole number from 1 to 256"),
        ("1.5", "caa.lookups_per_account"),
        ('"8"', "caa.lookups_per_account"),
    ],
    ids=["zero", "negative", "above-the-total", "fraction", "string"],
)
def test_a_share_out_of_bounds_is_refused_at_load(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _load(tmp_path, f"[caa]\nlookups_per_account = {value}\n")

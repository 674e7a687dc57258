"""A write that fails part way (a mode the kernel refuses, a full disk) leaves nothing:
no temporary file beside the target (for a key: a copy of it), and no open descriptor,
which a long-running fleet worker would otherwise gather until it could open none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from acmekit.files import atomic_write, atomic_write_together


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("together", [False, True], ids=["one", "together"])
def test_a_failed_write_leaves_no_file_and_no_descriptor(tmp_path: Path, together: bool) -> None:
    key = tmp_path / "privkey.pem"
    key.write_bytes(b"old key")
    before = _open_fds()
    for _ in range(20):
        with pytest.raises(OverflowError):
            if together:
                atomic_write_together([(tmp_path / "chain.pem", b"c", 0o644), (key, b"k", 2**40)])
            else:
                atomic_write(key, b"new key", 2**40)
    assert _open_fds() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["privkey.pem"]
    assert key.read_bytes() == b"old key"


def test_the_mode_is_set_before_the_data_is_written(tmp_path: Path) -> None:
    key = tmp_path / "privkey.pem"
    atomic_write(key, b"secret", 0o600)
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_bytes() == b"secret"

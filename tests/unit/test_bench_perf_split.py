"""bench/_perf.py's reading of `perf report --sort dso`: every shared object lands in
one group, the shares add up, and header lines are not read as samples."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

REPORT = """\
# Total Lost Samples: 0
#
# Samples: 7K of event 'cpu-clock'
# Overhead  Shared Object
# ........  ..............................
#
    47.06%  libpython3.11.so.1.0
    16.26%  _rust.abi3.so
    14.40%  [kernel.kallsyms]
     7.90%  libsqlite3.so.0.8.6
     6.21%  libc.so.6
     2.45%  loop.cpython-311-x86_64-linux-gnu.so
     1.72%  libcrypto.so.3
     0.91%  parser.cpython-311-x86_64-linux-gnu.so
     0.43%  _json.cpython-311-x86_64-linux-gnu.so
     0.32%  _sqlite3.cpython-311-x86_64-linux-gnu.so
     0.14%  [vdso]
"""


@pytest.fixture(scope="module")
def perf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_perf", BENCH / "_perf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_perf", module)
    spec.loader.exec_module(module)
    return module


def test_the_acmekit_split_groups_each_object_once(perf: ModuleType) -> None:
    shares = perf.split_report(REPORT)
    assert set(shares) == set(perf.GROUP_NAMES)
    assert shares["interpreter"] == pytest.approx(0.4706)
    assert shares["crypto"] == pytest.approx(0.1626 + 0.0172)
    assert shares["kernel"] == pytest.approx(0.1440)
    assert shares["sqlite"] == pytest.approx(0.0790 + 0.0032)
    assert shares["loop+http"] == pytest.approx(0.0245 + 0.0091)
    assert shares["other"] == pytest.approx(0.0043 + 0.0014)  # _json, [vdso]
    assert sum(shares.values()) == pytest.approx(0.978)


def test_pebble_is_its_binary_and_the_kernel(perf: ModuleType) -> None:
    shares = perf.split_report("    63.25%  pebble\n    36.31%  [kernel.kallsyms]\n")
    assert shares["pebble"] == pytest.approx(0.6325)
    assert shares["kernel"] == pytest.approx(0.3631)
    assert shares["interpreter"] == 0.0
    assert perf.group_of("pebble-challtestsrv") == "other"

"""Where a server's CPU time goes over one phase of a benchmark, by shared object.

`perf record -e cpu-clock` samples the running process (all its threads) at a fixed rate
of its CPU time, kernel included, from outside: the samples fall where the CPU time is
spent, unlike a wall-clock profiler's, which also fall where a process waits or was
preempted. Under valgrind OpenSSL takes slower code paths than on the real CPU, so
instruction counts overstate its share; these shares do not. Each shared object is put
in a group (the interpreter, cryptography and OpenSSL, the kernel, SQLite, libc, the
event loop and HTTP parser, the rest), so that a CPython CA and a Go one (whose whole
user space is one stripped binary) can be set side by side. Needs `perf` (Debian:
linux-perf) and the right to attach to the server (root, or perf_event_paranoid <= 1).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

RATE = 999  # samples per second of the process's CPU time (off the timer's round numbers)

# The first pattern a shared object's name matches names its group.
GROUPS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("interpreter", re.compile(r"^libpython")),
    ("crypto", re.compile(r"^(_rust\.abi3|libcrypto|libssl|_ssl\.|_hashlib\.|_blake2\.)")),
    ("kernel", re.compile(r"^\[kernel")),
    ("sqlite", re.compile(r"^(libsqlite3|_sqlite3\.)")),
    ("libc", re.compile(r"^(libc\.so|libm\.so|ld-linux)")),
    ("loop+http", re.compile(r"^(loop\.cpython|parser\.cpython|_asyncio\.)")),
    ("pebble", re.compile(r"^pebble$")),
)
OTHER = "other"
GROUP_NAMES = (*(name for name, _ in GROUPS), OTHER)
_LINE = re.compile(r"^\s*([\d.]+)%\s+(\S.*?)\s*$")


def available() -> bool:
    return shutil.which("perf") is not None


def group_of(dso: str) -> str:
    for name, pattern in GROUPS:
        if pattern.search(dso):
            return name
    return OTHER


def split_report(text: str) -> dict[str, float]:
    """Shares (0-1) by group from `perf report --sort dso --stdio` text."""
    shares = dict.fromkeys(GROUP_NAMES, 0.0)
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and not line.lstrip().startswith("#"):
            shares[group_of(m.group(2))] += float(m.group(1)) / 100
    return shares


@dataclass
class Sampler:
    """Samples process `pid` between `start` and `stop` into out_dir/label.perf.data."""

    out_dir: Path
    label: str
    pid: int
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.out_dir / f"{self.label}.perf.data"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(RATE), "-p", str(self.pid),
             "-o", str(self.data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> dict[str, float]:
        assert self._proc is not None, "stop before start"
        self._proc.send_signal(signal.SIGINT)  # perf writes its file and exits on SIGINT
        self._proc.wait(60)
        report = subprocess.run(
            ["perf", "report", "-i", str(self.data), "--sort", "dso", "--stdio"],
            capture_output=True,
            text=True,
            check=True,
        )
        return split_report(report.stdout)

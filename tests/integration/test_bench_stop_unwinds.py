"""A benchmark stopped with `kill PID` (SIGTERM) stops the peers it started.

The benchmarks start their peers (DNS server, http-01 responder, CT logs) in `with`
blocks whose `finally` stops them by PID; `bench/_common.py` turns SIGTERM into
SystemExit so that those blocks run. Here a script that imports it starts a child the
same way, is sent SIGTERM, and the child must be gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

SCRIPT = """
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import _common
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
try:
    print(child.pid, flush=True)
    time.sleep(120)
finally:
    _common.stop_process(child)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child not yet reaped by its parent is a zombie: it no longer runs.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_stops_the_children_a_benchmark_started() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(BENCH)], stdout=subprocess.PIPE, text=True
    )
    started: list[int] = []
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        started.append(child)
        assert _alive(child)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in started:  # left behind only when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

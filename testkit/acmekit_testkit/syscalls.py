"""A Python script run under strace, its system calls split into the phases it marks.

The script marks where each phase begins with `mark(name)` (defined by `SCRIPT_HEAD`,
with `work`, the directory it is given): an rmdir of a path that does not exist, which
strace shows and nothing else in the process makes. Used to watch when a database's
write-ahead log is written and synced (the tests of synced commits)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

SCRIPT_HEAD = """import os
import sys
from pathlib import Path

work = Path(sys.argv[1])


def mark(name):
    try:
        os.rmdir(work / "marks" / name)
    except OSError:
        pass


"""
SYNCS = ("fsync", "fdatasync")
_CALL = re.compile(r"^\d+\s+(\w+)\((.*)$")


def strace() -> str:
    found = shutil.which("strace")
    assert found is not None, "strace is needed to watch the process's system calls"
    return found


def traced(work: Path, script: str, calls: Sequence[str]) -> list[tuple[str, str, str]]:
    """Run `SCRIPT_HEAD` and `script` (given `work`) under strace, tracing `calls` in
    every thread and child: each call made after the first mark, as (phase, call, name
    of the file its descriptor refers to, or "?"); each mark as (phase, "mark", "")."""
    (work / "run.py").write_text(SCRIPT_HEAD + script)
    out = work / "trace.txt"
    wanted = "trace=" + ",".join((*calls, "rmdir"))
    watch = [strace(), "-f", "-qq", "-y", "-e", wanted, "-o", str(out)]
    subprocess.run(
        [*watch, sys.executable, str(work / "run.py"), str(work)], check=True, timeout=120
    )
    found: list[tuple[str, str, str]] = []
    phase = None
    for line in out.read_text().splitlines():
        call = _CALL.match(line)
        if call is None:
            continue
        name, args = call.groups()
        marked = re.search(r'marks/([\w-]+)"', args) if name == "rmdir" else None
        if marked is not None:
            phase = marked.group(1)
            found.append((phase, "mark", ""))
        elif phase is not None and name != "rmdir":
            path = re.search(r"<([^>]*)>", args)  # strace -y: the descriptor's path
            found.append((phase, name, Path(path.group(1)).name if path else "?"))
    return found


def syncs_by_phase(calls: list[tuple[str, str, str]]) -> dict[str, Counter[str]]:
    """For each phase, its syncs (fsync, fdatasync) by the synced file's name."""
    phases: dict[str, Counter[str]] = {}
    for phase, call, name in calls:
        counted = phases.setdefault(phase, Counter())
        if call in SYNCS:
            counted[name] += 1
    return phases

"""A server process's instructions over one phase of a benchmark, under callgrind.

The process runs under `valgrind --tool=callgrind --instr-atstart=no` (start-up is not
instrumented); `Phase.start` zeroes the counters and switches instrumentation on from
outside (`callgrind_control`, through valgrind's gdbserver), `Phase.stop` switches it
off and dumps. The dump's total Ir is the phase's instructions: a count that the
machine's load does not move, unlike CPU time. The dump also counts calls: `accept4`
(TCP connections the server accepted) and `SSL_new` (TLS connections it set up, one
handshake each), so connection reuse can be read off the same run.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_FN = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")
COUNTED_CALLS = ("accept4", "SSL_new")


def wrapper(out_dir: Path, label: str) -> list[str]:
    """The command to run a server under: dumps go to out_dir/label.PID.N."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_dir / label}.%p",
    ]


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


@dataclass(frozen=True)
class Counts:
    instructions: int
    calls: dict[str, int]


def read_dump(path: Path, names: tuple[str, ...] = COUNTED_CALLS) -> Counts:
    """Total Ir of a callgrind dump, and the calls made to each of `names` (a callee is
    named in full the first time, by its number after that)."""
    known: dict[str, str] = {}
    calls = dict.fromkeys(names, 0)
    total, callee = 0, ""
    with path.open() as lines:
        for line in lines:
            if line.startswith(("fn=", "cfn=")):
                m = _FN.match(line.rstrip("\n"))
                if m is None:
                    continue
                number, name = m.groups()
                if name:
                    known[number] = name
                if line.startswith("cfn="):
                    callee = known.get(number, "")
            elif line.startswith("calls=") and callee in calls:
                calls[callee] += int(line.split("=", 1)[1].split()[0])
            elif line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split(":", 1)[1].split()[0]))
    return Counts(total, calls)


@dataclass(frozen=True)
class Phase:
    """One measured phase of the process `pid`, run under `wrapper(out_dir, label)`."""

    out_dir: Path
    label: str
    pid: int

    def start(self) -> None:
        _control(self.pid, "--zero")
        _control(self.pid, "--instr=on")

    def stop(self) -> Counts:
        _control(self.pid, "--instr=off")
        _control(self.pid, "--dump")
        dumps = sorted(
            self.out_dir.glob(f"{self.label}.{self.pid}.*"),
            key=lambda p: int(p.suffix.lstrip(".")),
        )
        return read_dump(dumps[-1])

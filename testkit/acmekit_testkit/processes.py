"""Processes that tests and benchmarks start: waiting until they are ready, stopping them.

Every wait has a deadline and, when it gives up, says what did not happen with the tail
of the process's log. A process is stopped by its PID (terminate, then kill).
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop a process we started, by its PID: terminate, then kill if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def logged_process(
    argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` with its standard output and error in `log` and `env` on top of this
    process's environment (Python's output unbuffered); stopped by its PID when the
    block ends."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=full_env)
    try:
        yield proc
    finally:
        stop_process(proc)


def log_tail(log: Path, chars: int = 3000) -> str:
    """The end of a log file ("" while it does not exist)."""
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    log: Path,
    what: str,
    *,
    timeout: float = 20,
    interval: float = 0.05,
) -> None:
    """Poll `ready` until it holds; RuntimeError if `proc` exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log_tail(log)}")
        time.sleep(interval)


def wait_for_lines(
    proc: subprocess.Popen[bytes],
    log: Path,
    prefixes: Sequence[str],
    what: str,
    *,
    timeout: float = 30,
) -> dict[str, str]:
    """Wait until `log` has a line starting with each of `prefixes`, as a process prints
    where it listens once it does; {prefix: the rest of that line}."""
    found: dict[str, str] = {}

    def printed() -> bool:
        text = log.read_text(errors="replace") if log.exists() else ""
        for line in text.splitlines():
            for prefix in prefixes:
                if prefix not in found and line.startswith(prefix):
                    found[prefix] = line.removeprefix(prefix).strip()
        return len(found) == len(prefixes)

    wait_ready(proc, printed, log, what, timeout=timeout)
    return found


def wait_https(
    proc: subprocess.Popen[bytes],
    url: str,
    cafile: Path,
    log: Path,
    what: str,
    *,
    timeout: float = 20,
) -> None:
    """Wait until `url` answers over HTTPS, trusting `cafile`."""
    ctx = ssl.create_default_context(cafile=str(cafile))

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2):
                return True
        except OSError:
            return False

    wait_ready(proc, answers, log, what, timeout=timeout)


def wait_until(what: str, check: Callable[[], bool], timeout: float, logs: Sequence[Path]) -> None:
    """Poll `check` until it holds; AssertionError with the logs' tails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tails = "\n".join(log_tail(log) for log in logs)
    raise AssertionError(f"{what} did not happen\n{tails}")


def sleeping_thread(pid: int) -> bool:
    """Whether a thread of process `pid` sleeps in the kernel's nanosleep (SQLite's busy
    handler between its tries for a lock, where a C call holds the thread): read from
    each thread's `/proc/PID/task/TID/wchan`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            wchan = (task / "wchan").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        if "nanosleep" in wchan:
            return True
    return False


def alive(pid: int) -> bool:
    """Whether process `pid` runs: a zombie (dead, waiting for its parent to reap it) does
    not, nor a PID not in /proc."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    # "PID (COMM) STATE ...": COMM may hold spaces and parentheses
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def until_gone(pid: int, timeout: float = 30) -> None:
    """Wait until process `pid` no longer runs (bounded, so that a process left running
    fails the test)."""
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), f"process {pid} still runs"

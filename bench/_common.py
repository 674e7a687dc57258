"""Shared pieces of the benchmarks: process CPU, and the peers they start.

Every process started here runs on 127.0.0.1 with ports chosen by binding port 0, is
watched through /proc/PID/stat for its CPU time (utime + stime of the process and all
its descendants), and is stopped by its PID when the `with` block ends. Starting the
peers, free ports and fresh databases come from the package the tests use
(`acmekit_testkit`, installed with the project), so that benchmarks and tests run their
peers the same way.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from acmekit.server.config import Limit, RateLimits
from acmekit_testkit import pebble
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.challtestsrv import running_challtestsrv
from acmekit_testkit.cli import certbot_dirs
from acmekit_testkit.ctlog import ca_hierarchy, running_ct_log
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.ports import free_port, free_tcp_udp_port
from acmekit_testkit.processes import stop_process, wait_https


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


# A benchmark stopped by `kill PID` would otherwise die at once, skipping the `finally`
# blocks that stop the peers it started (DNS server, responder, logs): they would be left
# running. As SystemExit, the stop unwinds every `with` block as Ctrl-C does.
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


__all__ = [
    "CLK_TCK",
    "RAISED_LIMITS",
    "Server",
    "certbot_dirs",
    "cpu_seconds",
    "free_port",
    "free_tcp_udp_port",
    "fresh_database",
    "raised_rate_limits",
    "running_acmekit",
    "running_challtestsrv",
    "running_pebble",
    "stop_process",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- CPU time


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is field 3, `state`)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and every live descendant, in seconds."""
    total, todo = 0, [pid]
    seen: set[int] = set()
    while todo and len(seen) < 1000:
        current = todo.pop()
        seen.add(current)
        fields = _stat_fields(current)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime
        todo.extend(k for k in _children(current) if k not in seen)
    return total / CLK_TCK


@dataclass(frozen=True)
class Server:
    """An ACME server under test: where its directory is, what to trust, whose CPU to read."""

    name: str
    directory_url: str
    root_path: Path
    pid: int


# ---------------------------------------------------------------- the CAs

# Every limit on and checked, taken and spent as in production, each sized so that a load
# generator issuing hundreds of certificates under one registered domain, from one
# address, is never refused (`[rate_limits]`, src/acmekit/server/config.py): a period
# left as it is (a period of 0 would skip the buckets) and a burst of a billion.
RAISED = 1_000_000_000
_BUCKETS = [f.name for f in fields(RateLimits) if isinstance(f.default, Limit)]
RAISED_LIMITS: dict[str, Any] = {
    "enabled": True,
    **{name: {"count": RAISED} for name in _BUCKETS},
    "pending_authorizations_per_account": RAISED,
}


def raised_rate_limits() -> RateLimits:
    """`RAISED_LIMITS` as the CA's configuration holds it (for a CA run in process)."""
    default = RateLimits()
    buckets = {name: replace(getattr(default, name), count=RAISED) for name in _BUCKETS}
    return replace(default, pending_authorizations_per_account=RAISED, **buckets)


@contextmanager
def running_acmekit(
    workdir: Path,
    *,
    dns_port: int,
    http_port: int,
    lint: bool = True,
    ct_logs: int = 0,
    ct_submit_final: bool = True,
    db: str | None = None,
    rate_limits: Mapping[str, Any] | None = None,
    name: str | None = None,
    wrapper: Sequence[str] = (),
) -> Iterator[Server]:
    """`acmekit server` with a fresh state dir, without debug logging; ready once its
    directory answers over HTTPS. `wrapper` is a command to run it under (valgrind:
    start-up then takes minutes, and is waited for). `lint=False` switches linting
    before signing off;
    `ct_logs` > 0 starts that many `acmekit ct` logs on loopback and the CA logs every
    certificate in them (RFC 6962 precertificates, SCTs embedded; `ct_submit_final=False`
    without the final certificate's add-chain); `db` is a database URL
    (default: SQLite in the state dir); `rate_limits` the `[rate_limits]` table (default:
    off; `RAISED_LIMITS`: on, none refusing this load)."""
    # One load generator issues hundreds of certificates under one registered domain
    # from one address: Let's Encrypt-sized rate limits would refuse it (Pebble has none).
    off = {"enabled": False}
    settings: dict[str, Any] = {
        "rate_limits": off if rate_limits is None else dict(rate_limits),
        "crl": {"listen": f"127.0.0.1:{free_port()}"},
        "lint": {"enabled": lint},
    }
    if db is not None:
        settings["db"] = db
    state = workdir / f"ca-state-{os.getpid()}-{free_port()}"
    with ExitStack() as stack:
        if ct_logs:
            ca_hierarchy(state)  # the logs accept the CA's root
            logs = [
                stack.enter_context(
                    running_ct_log(state.parent / f"{state.name}-log{i}", state / "root.pem")
                )
                for i in range(ct_logs)
            ]
            settings["ct"] = {
                "log_lists": [str(log.log_list) for log in logs],
                "submit_final": ct_submit_final,
            }
        ca = stack.enter_context(
            running_acmekit_server(
                workdir,
                dns_port=dns_port,
                http01_port=http_port,
                tlsalpn01_port=free_port(),
                state_dir=state,
                settings=settings,
                verbose=False,
                wrapper=wrapper,
                start_timeout=600 if wrapper else 30,
            )
        )
        wait_https(
            ca.proc,
            ca.directory_url,
            ca.root_path,
            ca.log,
            "acmekit server",
            timeout=600 if wrapper else 20,
        )
        if name is None:
            name = "acmekit" if lint else "acmekit-nolint"
            if ct_logs:
                name = "acmekit-ct" if ct_logs == 2 else f"acmekit-ct{ct_logs}"
        yield Server(name, ca.directory_url, ca.root_path, ca.proc.pid)


@contextmanager
def running_pebble(
    workdir: Path, *, dns_port: int, http_port: int, env: Mapping[str, str]
) -> Iterator[Server]:
    """Debian's Pebble with its VA pointed at 127.0.0.1:dns_port and `env` on top."""
    with pebble.running_pebble(
        workdir, dns_port=dns_port, http_port=http_port, tls_port=free_port(), env=env
    ) as handle:
        yield Server("pebble", handle.directory_url, handle.root_ca_path, handle.pid)

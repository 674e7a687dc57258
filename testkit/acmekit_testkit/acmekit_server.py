"""Run `acmekit server` as a real process on loopback, for integration and interop tests."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from acmekit.server.config import ValidationSettings
from acmekit.server.records import ValidationEvidence
from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import logged_process, wait_for_lines

# The CA refuses reserved addresses and special-use names (docs/security.md); a test CA
# validates on loopback, for names under .test and RFC 6761's example names.
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
TEST_SPECIAL_NAMES = ("test", "example", "example.com", "example.net", "example.org")
TEST_VALIDATION = ValidationSettings(LOOPBACK_NETWORKS, TEST_SPECIAL_NAMES)


def validation_flags() -> list[str]:
    """`acmekit server` flags that allow what TEST_VALIDATION allows."""
    flags = [f for net in LOOPBACK_NETWORKS for f in ("--allow-validation-network", net)]
    return flags + [f for name in TEST_SPECIAL_NAMES for f in ("--allow-special-name", name)]


@dataclass(frozen=True)
class ServerHandle:
    directory_url: str
    root_path: Path
    state_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return self.directory_url.removesuffix("/directory")

    def client_args(self) -> list[str]:
        """`--server DIRECTORY --ca-bundle ROOT`, as `acmekit fleet` commands take them."""
        return ["--server", self.directory_url, "--ca-bundle", str(self.root_path)]

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run, as after a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table, e.g. one of [mpic] perspectives
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return f'"{value}"'


def _toml(values: dict[str, Any]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
    return "\n".join(lines) + "\n"


@contextmanager
def running_acmekit_server(
    workdir: Path,
    *,
    dns_port: int,
    http01_port: int = 80,
    tlsalpn01_port: int = 443,
    state_dir: Path | None = None,
    settings: dict[str, Any] | None = None,
    port: int | None = None,
    verbose: bool = True,
    wrapper: Sequence[str] = (),
    start_timeout: float = 30,
) -> Iterator[ServerHandle]:
    """Start the CA; stop it by PID on exit (unless the test killed it already).
    `verbose` passes `-v` (debug logging); `wrapper` is a command the CA runs under (a
    benchmark's `valgrind --tool=callgrind ...`), which may need a longer `start_timeout`."""
    state = state_dir or workdir / "ca-state"
    config = workdir / f"ca-{time.monotonic_ns()}.toml"
    config.write_text(_toml(settings or {}))
    argv = [
        *wrapper, sys.executable, "-m", "acmekit", *(["-v"] if verbose else []), "server",
        "--listen", f"127.0.0.1:{port or free_port()}",
        "--state-dir", str(state),
        "--dns-resolver", f"127.0.0.1:{dns_port}",
        "--http01-port", str(http01_port),
        "--tlsalpn01-port", str(tlsalpn01_port),
        "--config", str(config),
        *validation_flags(),
    ]  # fmt: skip
    log = workdir / f"ca-{time.monotonic_ns()}.log"
    with logged_process(argv, log) as proc:
        found = wait_for_lines(
            proc, log, ("directory: ", "root: "), "acmekit server", timeout=start_timeout
        )
        yield ServerHandle(found["directory: "], Path(found["root: "]), state, proc, log)


def recorded_evidence(state_dir: Path, name: str) -> list[ValidationEvidence]:
    """What the CA whose state directory is `state_dir` (SQLite, its default database)
    stored on every authorization for `name` about how it was validated: the remote
    perspectives' quorum and answers, and whether the DNS answers were authenticated."""
    with sqlite3.connect(state_dir / "acmekit.db") as db:
        rows = db.execute(
            "SELECT mpic_quorum, mpic_perspectives, dnssec_dcv, dnssec_caa "
            "FROM authorizations WHERE identifier_value = ?",
            (name,),
        ).fetchall()
    return [
        ValidationEvidence(
            quorum,
            None if answers is None else tuple(json.loads(answers)),
            None if dcv is None else bool(dcv),
            None if caa is None else bool(caa),
        )
        for quorum, answers, dcv, caa in rows
    ]


class _AnswersDns(Protocol):
    @property
    def dns_port(self) -> int: ...


DnsT = TypeVar("DnsT", bound=_AnswersDns)


@dataclass(frozen=True)
class CaProcess(Generic[DnsT]):
    """`acmekit server` as a process, the DNS server it asks about every name, and the
    ports it validates http-01 and tls-alpn-01 on."""

    server: ServerHandle
    dns: DnsT
    http01_port: int
    tlsalpn01_port: int


@contextmanager
def running_ca_process(
    workdir: Path, dns: DnsT, settings: dict[str, Any] | None = None
) -> Iterator[CaProcess[DnsT]]:
    """`acmekit server` asking `dns` (a server on 127.0.0.1 with a `dns_port`), validating
    on free ports; `settings` as `running_acmekit_server` takes them."""
    http01, tlsalpn01 = free_port(), free_port()
    with running_acmekit_server(
        workdir,
        dns_port=dns.dns_port,
        http01_port=http01,
        tlsalpn01_port=tlsalpn01,
        settings=settings,
    ) as server:
        yield CaProcess(server, dns, http01, tlsalpn01)

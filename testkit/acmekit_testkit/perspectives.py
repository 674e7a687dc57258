"""Remote validation perspectives (`acmekit server perspective`) as real processes.

    with running_perspective(workdir, ca_state, "p1", "ARIN", dns_port=...) as p:
        p.url                      # https://127.0.0.1:PORT, for the CA's [mpic]

`perspective-certs` issues the perspective's certificate from the CA's root in
`ca_state` first (and the CA's client certificate, if it has none), unless `certs_dir`
names a directory that already holds `server.pem`, `server.key` and `ca.pem` (a test of
a perspective the CA must not trust). Each process is stopped by its PID.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acmekit_testkit.acmekit_server import LOOPBACK_NETWORKS, TEST_SPECIAL_NAMES
from acmekit_testkit.processes import logged_process, wait_for_lines

# Three perspectives in three RIRs' regions: the fewest the quorum rule (BR 3.2.2.9) lets
# one of fail.
RIRS = {"i-arin": "ARIN", "i-ripe": "RIPE", "i-apnic": "APNIC"}


@dataclass(frozen=True)
class PerspectiveHandle:
    name: str
    rir: str
    url: str
    state_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def settings(self) -> dict[str, str]:
        """Its entry in the CA's `[mpic] perspectives`."""
        return {"url": self.url, "name": self.name, "rir": self.rir}


def perspective_flags() -> list[str]:
    flags = [f for net in LOOPBACK_NETWORKS for f in ("--allow-validation-network", net)]
    return flags + [f for name in TEST_SPECIAL_NAMES for f in ("--allow-special-name", name)]


def issue_certs(
    ca_state: Path, name: str, out: Path, hosts: Sequence[str] = ("127.0.0.1",)
) -> Path:
    argv = [sys.executable, "-m", "acmekit", "server", "perspective-certs",
            "--state-dir", str(ca_state), "--name", name, "--out", str(out)]  # fmt: skip
    for host in hosts:
        argv += ["--host", host]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return out


@contextmanager
def running_perspective(
    workdir: Path,
    ca_state: Path,
    name: str,
    rir: str,
    *,
    dns_port: int,
    http01_port: int,
    tlsalpn01_port: int = 443,
    certs_dir: Path | None = None,
    host: str = "127.0.0.1",
    dnssec_probe: str | None = None,
) -> Iterator[PerspectiveHandle]:
    """With `dnssec_probe`, `--dnssec require-validating-resolver`: the perspective starts
    only if its resolver authenticates that name, and refuses what does not validate."""
    state = certs_dir or issue_certs(ca_state, name, workdir / f"perspective-{name}", (host,))
    argv: list[Any] = [
        sys.executable, "-m", "acmekit", "-v", "server", "perspective",
        "--listen", f"{host}:0", "--name", name, "--rir", rir, "--state-dir", str(state),
        "--dns-resolver", f"127.0.0.1:{dns_port}",
        "--http01-port", str(http01_port), "--tlsalpn01-port", str(tlsalpn01_port),
        "--timeout", "5", *perspective_flags(),
    ]  # fmt: skip
    if dnssec_probe is not None:
        argv += ["--dnssec", "require-validating-resolver", "--dnssec-probe", dnssec_probe]
    log = workdir / f"perspective-{name}-{time.monotonic_ns()}.log"
    with logged_process([str(a) for a in argv], log) as proc:
        prefix = f"perspective {name} ({rir}): "
        found = wait_for_lines(proc, log, (prefix,), f"perspective {name}")
        yield PerspectiveHandle(name, rir, found[prefix], state, proc, log)


@contextmanager
def running_perspectives(
    workdir: Path,
    ca_state: Path,
    *,
    dns_ports: Sequence[int],
    http01_port: int,
    dnssec_probe: str | None = None,
) -> Iterator[tuple[PerspectiveHandle, ...]]:
    """The perspectives of RIRS, the first asking the resolver on `dns_ports[0]`, and so
    on (give the same port thrice for one shared resolver)."""
    with ExitStack() as stack:
        started = []
        for (name, rir), port in zip(RIRS.items(), dns_ports, strict=True):
            each = running_perspective(
                workdir, ca_state, name, rir, dns_port=port, http01_port=http01_port,
                dnssec_probe=dnssec_probe,
            )  # fmt: skip
            started.append(stack.enter_context(each))
        yield tuple(started)


def mpic_settings(perspectives: Sequence[PerspectiveHandle]) -> dict[str, Any]:
    """The CA's `[mpic]` table asking `perspectives`."""
    return {"enabled": True, "perspectives": [p.settings() for p in perspectives]}


def corroborated(ca_log: Path, name: str) -> bool:
    """Whether the CA's log (`ServerHandle.log`) says that the remote perspectives
    corroborated a validation for `name` (the line the authority writes per round)."""
    return any(
        "mpic for authorization" in line and f"({name}): pass" in line
        for line in ca_log.read_text(errors="replace").splitlines()
    )


__all__ = [
    "RIRS",
    "PerspectiveHandle",
    "corroborated",
    "issue_certs",
    "mpic_settings",
    "perspective_flags",
    "running_perspective",
    "running_perspectives",
]

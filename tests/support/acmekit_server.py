"""Run `acmekit server` as a real process on loopback, for integration and interop tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.ports import free_port


@dataclass(frozen=True)
class ServerHandle:
    directory_url: str
    root_path: Path
    state_dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return self.directory_url.removesuffix("/directory")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run, as after a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _toml(values: dict[str, Any]) -> str:
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, dict):
            continue
        else:
            lines.append(f'{key} = "{value}"')
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines.extend(f'{k} = "{v}"' for k, v in value.items())
    return "\n".join(lines) + "\n"


def _wait_for_lines(proc: subprocess.Popen[bytes], log: Path) -> tuple[str, Path]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        found = dict(
            line.split(": ", 1)
            for line in text.splitlines()
            if line.startswith(("directory: ", "root: "))
        )
        if "directory" in found and "root" in found:
            return found["directory"], Path(found["root"])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"acmekit server did not start:\n{log.read_text()[-3000:]}")


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
) -> Iterator[ServerHandle]:
    """Start the CA; stop it by PID on exit (unless the test killed it already)."""
    state = state_dir or workdir / "ca-state"
    config = workdir / f"ca-{time.monotonic_ns()}.toml"
    config.write_text(_toml(settings or {}))
    argv = [
        sys.executable, "-m", "acmekit", "-v", "server",
        "--listen", f"127.0.0.1:{port or free_port()}",
        "--state-dir", str(state),
        "--dns-resolver", f"127.0.0.1:{dns_port}",
        "--http01-port", str(http01_port),
        "--tlsalpn01-port", str(tlsalpn01_port),
        "--config", str(config),
    ]  # fmt: skip
    log = workdir / f"ca-{time.monotonic_ns()}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        directory, root = _wait_for_lines(proc, log)
        yield ServerHandle(directory, root, state, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

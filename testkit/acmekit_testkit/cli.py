"""Command-line clients as a user runs them: `acmekit` (or certbot) as a subprocess that
trusts a given CA bundle, certbot's three directories, and a webroot served over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from acmekit_testkit.processes import stop_process


def certbot_dirs(base: Path) -> list[str]:
    """`--config-dir BASE/etc --work-dir BASE/work --logs-dir BASE/logs`."""
    return ["--config-dir", str(base / "etc"), "--work-dir", str(base / "work"),
            "--logs-dir", str(base / "logs")]  # fmt: skip


def run_trusting(
    argv: Sequence[str], ca_bundle: Path, *, timeout: float = 180, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `argv` with REQUESTS_CA_BUNDLE=ca_bundle; its exit code and output as text."""
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(ca_bundle)}
    return subprocess.run(
        list(argv), capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd
    )


def run_acmekit(
    ca_bundle: Path, *args: str, timeout: float = 180, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`acmekit ARGS` as a process of this Python, trusting `ca_bundle`."""
    argv = [sys.executable, "-m", "acmekit", *args]
    return run_trusting(argv, ca_bundle, timeout=timeout, cwd=cwd)


@contextmanager
def serving_webroot(root: Path, port: int) -> Iterator[Path]:
    """A plain web server on 127.0.0.1:`port` serving the directory `root` (created), as a
    site's own server answers http-01 from its webroot; stopped by its PID."""
    root.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
         "--directory", str(root), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield root
    finally:
        stop_process(proc)

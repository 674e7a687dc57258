"""Command-line clients as a user runs them: `acmekit` (or certbot, or lego) as a subprocess
that trusts a given CA bundle, certbot's three directories, and a webroot served over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from acmekit_testkit.acmekit_server import ServerHandle
from acmekit_testkit.processes import stop_process

CERTBOT = "/usr/bin/certbot"
LEGO = "/usr/bin/lego"


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


def certbot_standalone(
    server: ServerHandle, base: Path, http01_port: int, *names: str
) -> subprocess.CompletedProcess[str]:
    """Debian's certbot, http-01 with its own (standalone) server on 127.0.0.1:`http01_port`,
    for `names` from `server`; its directories under `base`."""
    argv = [
        CERTBOT, "certonly", "--non-interactive", "--agree-tos", "-m", "ops@interop.test",
        "--server", server.directory_url, *certbot_dirs(base), "--key-type", "ecdsa",
        "--standalone", "--http-01-port", str(http01_port), "--http-01-address", "127.0.0.1",
        *(arg for name in names for arg in ("-d", name)),
    ]  # fmt: skip
    return run_trusting(argv, server.root_path)


def certbot_rfc2136(
    server: ServerHandle, base: Path, ini: Path, *names: str
) -> subprocess.CompletedProcess[str]:
    """Debian's certbot, dns-01 through its dns-rfc2136 plugin with the credentials `ini`,
    for `names` from `server`; its directories under `base`."""
    argv = [
        CERTBOT, "certonly", "--non-interactive", "--agree-tos", "-m", "ops@interop.test",
        "--server", server.directory_url, *certbot_dirs(base), "--key-type", "ecdsa",
        "--authenticator", "dns-rfc2136", "--dns-rfc2136-credentials", str(ini),
        "--dns-rfc2136-propagation-seconds", "1",
        *(arg for name in names for arg in ("-d", name)),
    ]  # fmt: skip
    return run_trusting(argv, server.root_path)


def run_lego(
    server: ServerHandle,
    base: Path,
    names: Sequence[str],
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Debian's lego `run` for `names` from `server` (trusting its root), with the
    challenge options `args` and `env`; its files under `base`/lego."""
    argv = [
        LEGO, "--server", server.directory_url, "--accept-tos", "--email", "ops@interop.test",
        "--path", str(base / "lego"), "--key-type", "ec256",
        *(f"--domains={name}" for name in names), *args, "run",
    ]  # fmt: skip
    full_env = {**os.environ, "LEGO_CA_CERTIFICATES": str(server.root_path), **(env or {})}
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=180)


def lego_certificate(base: Path, name: str) -> Path:
    """Where `run_lego` leaves the certificate whose first name is `name`."""
    return base / "lego" / "certificates" / f"{name.replace('*', '_')}.crt"


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

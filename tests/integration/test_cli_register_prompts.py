"""Registration as certbot does it: `--agree-tos` only where the CA publishes terms
(`meta.termsOfService`), e-mail and terms asked at a terminal (a real pseudo-terminal
here), every missing flag named in one line without one, and `--server` defaulting to
Let's Encrypt's production directory (never contacted: every run here names a server)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.cli.client import LETS_ENCRYPT, certonly, register, show_account
from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.cli import certbot_dirs
from acmekit_testkit.dnsserver import DnsServerHandle

TERMS = "https://terms.register.test/v1.pdf"


@pytest.fixture(scope="module")
def with_terms(
    tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle
) -> Iterator[ServerHandle]:
    workdir = tmp_path_factory.mktemp("terms-ca")
    settings = {"terms_of_service": TERMS}
    with running_acmekit_server(workdir, dns_port=dns.dns_port, settings=settings) as server:
        yield server


@pytest.fixture(scope="module")
def without_terms(
    tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle
) -> Iterator[ServerHandle]:
    workdir = tmp_path_factory.mktemp("no-terms-ca")
    with running_acmekit_server(workdir, dns_port=dns.dns_port) as server:
        yield server


def _register(server: ServerHandle, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "acmekit", "register", "--server", server.directory_url,
            "--ca-bundle", str(server.root_path), *certbot_dirs(tmp), *args]  # fmt: skip
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_no_terms_published_means_no_agree_tos_needed(
    without_terms: ServerHandle, tmp_path: Path
) -> None:
    done = _register(without_terms, tmp_path, "-m", "ops@register.test")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Account registered: ")


def test_missing_flags_are_named_at_once(with_terms: ServerHandle, tmp_path: Path) -> None:
    done = _register(with_terms, tmp_path, "--non-interactive")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line == (
        "acmekit: registering needs -m EMAIL (or --register-unsafely-without-email); "
        f"--agree-tos (to the terms of service at {TERMS})"
    )
    assert not (tmp_path / "etc" / "accounts").exists()


def _read_until(fd: int, text: str, timeout: float = 30) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {text!r} in {seen!r}")
        seen += os.read(fd, 4096)
    return seen.decode()


def test_a_terminal_is_asked_for_the_email_and_the_terms(
    with_terms: ServerHandle, tmp_path: Path
) -> None:
    main, child = pty.openpty()
    argv = [sys.executable, "-m", "acmekit", "register", "--server", with_terms.directory_url,
            "--ca-bundle", str(with_terms.root_path), *certbot_dirs(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child)
    os.close(child)
    try:
        _read_until(main, "(Enter 'c' to cancel): ")
        os.write(main, b"admin@register.test\n")
        asked = _read_until(main, "(Y)es/(N)o: ")
        assert f"Please read the Terms of Service at\r\n{TERMS}\r\n" in asked
        os.write(main, b"y\n")
        out = _read_until(main, "Account registered: ")
        assert proc.wait(timeout=30) == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    shown = subprocess.run(
        [sys.executable, "-m", "acmekit", "show_account", "--server", with_terms.directory_url,
         "--ca-bundle", str(with_terms.root_path), *certbot_dirs(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Email contact: admin@register.test" in shown.stdout, shown.stderr


def test_server_defaults_to_lets_encrypt_production() -> None:
    assert LETS_ENCRYPT == "https://acme-v02.api.letsencrypt.org/directory"
    for command in (certonly, register, show_account):
        (server,) = [p for p in command.params if p.name == "server"]
        assert server.default == LETS_ENCRYPT and not server.required


def test_certonly_names_every_missing_flag_at_once() -> None:
    from click.testing import CliRunner

    done = CliRunner().invoke(certonly, ["--server", "https://127.0.0.1:9/directory"])
    assert done.exit_code == 2
    assert done.output.splitlines()[-1] == (
        "Error: give at least one -d NAME; and one of --standalone, --webroot, --manual, "
        "--dns-rfc2136, --dns-hook, --nginx"
    )

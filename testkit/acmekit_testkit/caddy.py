"""Debian's Caddy as a fleet edge on loopback, asking the fleet for certificates.

    with running_caddy_edge(tmp_path / "caddy", cert_url=URL, challenge_upstream=P) as edge:
        edge.https_port, edge.http_port, served_serial(edge, name, root)

One `caddy run` per edge, from a Caddyfile in its own directory, stopped by its PID. Its
HTTPS site takes every server name and gets each certificate from the fleet during the
handshake (`tls { get_certificate http URL }`). Its plain-HTTP port forwards
`/.well-known/acme-challenge/` to the fleet's http-01 responder and redirects the rest to
HTTPS, as docs/fleet.md wires it. Caddy never obtains a certificate
itself and never leaves loopback: `auto_https off` (no issuer, no ACME, no redirects),
`skip_install_trust`, no admin endpoint, and HOME, XDG_DATA_HOME and XDG_CONFIG_HOME
in the edge's directory, so it writes nothing anywhere else.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cryptography import x509

from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import stop_process, wait_ready

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class CaddyEdge:
    prefix: Path
    https_port: int
    http_port: int
    pid: int

    def log(self) -> str:
        return (self.prefix / "caddy.log").read_text(errors="replace")


def caddy_config(
    prefix: Path, https_port: int, http_port: int, cert_url: str, upstream: int
) -> str:
    return f"""{{
	admin off
	auto_https off
	skip_install_trust
	http_port {http_port}
	https_port {https_port}
	storage file_system {prefix / "data"}
}}

https://:{https_port} {{
	bind {LOOPBACK}
	tls {{
		get_certificate http {cert_url}
	}}
	respond "served by caddy for {{host}}"
}}

http://:{http_port} {{
	bind {LOOPBACK}
	handle /.well-known/acme-challenge/* {{
		reverse_proxy {LOOPBACK}:{upstream}
	}}
	handle {{
		redir https://{{host}}{{uri}}
	}}
}}
"""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _both_listening(*ports: int) -> bool:
    return all(_listening(p) for p in ports)


def _start(prefix: Path, cert_url: str, upstream: int) -> tuple[subprocess.Popen[bytes], int, int]:
    """Caddy on free ports; other ports if another process took the first."""
    env = {
        **os.environ,
        "HOME": str(prefix),
        "XDG_DATA_HOME": str(prefix / "xdg-data"),
        "XDG_CONFIG_HOME": str(prefix / "xdg-config"),
    }
    log = prefix / "caddy.log"
    for _ in range(3):
        https_port, http_port = free_port(), free_port()
        conf = prefix / "Caddyfile"
        conf.write_text(caddy_config(prefix, https_port, http_port, cert_url, upstream))
        argv = ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"]
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env, cwd=prefix)
        try:
            wait_ready(proc, partial(_both_listening, https_port, http_port), log, "caddy")
        except RuntimeError:
            stop_process(proc)
            if "address already in use" not in log.read_text():
                raise
            continue
        return proc, https_port, http_port
    raise RuntimeError(f"caddy in {prefix} found no free ports")


@contextmanager
def running_caddy_edge(
    prefix: Path, *, cert_url: str, challenge_upstream: int
) -> Iterator[CaddyEdge]:
    """A Caddy edge in `prefix` that asks `cert_url` for every certificate and forwards
    http-01 challenges to port `challenge_upstream` on loopback."""
    prefix.mkdir(parents=True, exist_ok=True)
    proc, https_port, http_port = _start(prefix, cert_url, challenge_upstream)
    try:
        yield CaddyEdge(prefix, https_port, http_port, proc.pid)
    finally:
        stop_process(proc)


def served_serial(edge: CaddyEdge, name: str, root: Path) -> str | None:
    """The serial (hex) of the leaf Caddy presents for SNI `name`, verified against
    `root` for `name`; None if the handshake fails (Caddy has no certificate for it)."""
    ctx = ssl.create_default_context(cafile=str(root))
    try:
        with (
            socket.create_connection((LOOPBACK, edge.https_port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError:
        return None
    assert der is not None
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def openssl_subject(edge: CaddyEdge, name: str, root: Path) -> tuple[int, str]:
    """`openssl s_client -servername NAME -verify_hostname NAME` against the edge:
    (exit status, output)."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"{LOOPBACK}:{edge.https_port}",
         "-servername", name, "-verify_hostname", name, "-CAfile", str(root),
         "-verify_return_error"],
        input=b"", capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout.decode(errors="replace")

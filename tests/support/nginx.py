"""Debian's nginx as a fleet edge on loopback, for interop tests.

    with running_nginx_edge(tmp_path / "edge-a", challenge_upstream=fleet_http01_port) as edge:
        edge.https_port, edge.http_port, edge.cert_dir, edge.reload_command

One nginx per edge, its own prefix directory (config, pid file, logs, temp files), in the
foreground (`daemon off;`) so the process we start is the master and is stopped by its
PID. The plain-HTTP port forwards `/.well-known/acme-challenge/` to the fleet's http-01
responder; the HTTPS port picks each site's files from the edge directory by SNI:
`ssl_certificate CERT_DIR/$fleet_site/fullchain.pem` (variables: nginx 1.15.9 and later),
so a site added later needs no new configuration, only the files the fleet writes there.
The fleet names a site's directory after its first name; `$fleet_site` is the SNI name
if it is a plain host name (nginx does not check SNI before expanding it into a path,
so `../` must be kept out here), or the first name for a site's other names given in
`aliases`. A wildcard site's directory is `_.REST` (the deployer's name for `*.REST`);
`site_aliases` gives its entries: the mask `*.REST` (nginx's `hostnames` map matches
`www.REST` against it before any regex) and its other names, each to the fixed value
`_.REST`, so no part of the SNI name reaches the path.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from support.pebble import stop_process
from support.ports import free_port

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class NginxEdge:
    prefix: Path
    cert_dir: Path
    http_port: int
    https_port: int
    pid: int

    @property
    def reload_command(self) -> str:
        """What the fleet runs after writing files: SIGHUP to the master."""
        return f"kill -HUP {self.pid}"

    @property
    def edge_spec(self) -> str:
        """`DIR:RELOAD_CMD`, as `acmekit fleet serve --edge` takes it."""
        return f"{self.cert_dir}:{self.reload_command}"

    def reloads(self) -> int:
        """How many times the master has been told to reload (from its error log)."""
        return self.error_log().count("signal 1 (SIGHUP) received")

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def edge_config(
    prefix: Path,
    cert_dir: Path,
    ports: tuple[int, int],
    upstream: int,
    aliases: Mapping[str, str],
) -> str:
    """nginx.conf for one edge: challenge forwarding on HTTP (`ports[0]`), the fleet's
    files on HTTPS (`ports[1]`)."""
    http_port, https_port = ports
    # Certificates named by variables are read by the workers at each handshake, so the
    # workers must be able to read the keys (mode 0600): as root, run them as root.
    user = "user root;\n" if os.geteuid() == 0 else ""
    alias_lines = "".join(f"        {name} {site};\n" for name, site in aliases.items())
    return f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type text/plain;

    map $ssl_server_name $fleet_site {{
        hostnames;
        default "-";
{alias_lines}        "~^(?<fleet_name>([a-z0-9-]+\\.)+[a-z0-9-]+)$" $fleet_name;
    }}

    server {{
        listen {LOOPBACK}:{http_port};
        location /.well-known/acme-challenge/ {{
            proxy_pass http://{LOOPBACK}:{upstream};
            proxy_set_header Host $host;
        }}
        location / {{ return 404; }}
    }}

    server {{
        listen {LOOPBACK}:{https_port} ssl;
        ssl_certificate     {cert_dir}/$fleet_site/fullchain.pem;
        ssl_certificate_key {cert_dir}/$fleet_site/privkey.pem;
        location / {{ return 200 "served by {prefix.name} for $ssl_server_name\\n"; }}
    }}
}}
"""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _wait_until_listening(proc: subprocess.Popen[bytes], ports: tuple[int, ...], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(_listening(p) for p in ports):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    text = log.read_text(errors="replace") if log.exists() else ""
    raise RuntimeError(f"nginx did not start:\n{text[-3000:]}")


def _start(
    prefix: Path, cert_dir: Path, upstream: int, aliases: Mapping[str, str]
) -> tuple[subprocess.Popen[bytes], int, int]:
    """nginx on two free ports; a second pair of ports if another process took the first."""
    for _ in range(3):
        ports = (free_port(), free_port())
        conf = prefix / "nginx.conf"
        conf.write_text(edge_config(prefix, cert_dir, ports, upstream, aliases))
        argv = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
                "-g", "daemon off;"]  # fmt: skip
        with (prefix / "stderr.log").open("ab") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        try:
            _wait_until_listening(proc, ports, prefix / "error.log")
        except RuntimeError:
            stop_process(proc)
            if "Address already in use" not in (prefix / "error.log").read_text():
                raise
            continue
        return proc, *ports
    raise RuntimeError(f"nginx in {prefix} found no free ports")


@contextmanager
def running_nginx_edge(
    prefix: Path, *, challenge_upstream: int, aliases: Mapping[str, str] | None = None
) -> Iterator[NginxEdge]:
    """An nginx edge in `prefix`, its certificates in `prefix/certs`; stopped by PID.
    `aliases` maps a site's other names to its first name (its directory)."""
    cert_dir = prefix / "certs"
    for path in (prefix / "tmp", cert_dir):
        path.mkdir(parents=True, exist_ok=True)
    proc, http_port, https_port = _start(prefix, cert_dir, challenge_upstream, aliases or {})
    try:
        yield NginxEdge(prefix, cert_dir, http_port, https_port, proc.pid)
    finally:
        stop_process(proc)


def site_aliases(names: Sequence[str]) -> dict[str, str]:
    """nginx map entries for a site whose first name (a wildcard or not) names its
    directory: every other name, and a wildcard's mask, to that directory."""
    first = names[0]
    directory = first.replace("*", "_", 1)
    found = {name: directory for name in names[1:]}
    if first.startswith("*."):
        found[first] = directory
    return found


def acmekit_check(edge: NginxEdge, name: str, root: Path) -> dict[str, str]:
    """`acmekit check 127.0.0.1:PORT --servername NAME --ca-bundle ROOT`, parsed."""
    result = subprocess.run(
        [sys.executable, "-m", "acmekit", "check", f"127.0.0.1:{edge.https_port}",
         "--servername", name, "--ca-bundle", str(root)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout, result.stderr, edge.error_log()[-2000:])
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def served_serial(edge: NginxEdge, name: str, root: Path) -> str:
    """The serial of the leaf the edge presents for SNI `name`, verified against `root`."""
    ctx = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection(("127.0.0.1", edge.https_port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return format(x509.load_der_x509_certificate(der).serial_number, "x")

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

`running_edge_fleet` runs the whole set-up: two such edges in front of `acmekit fleet
serve`, with `acmekit server` and `acmekit dns` as processes; `check_served` checks what
an edge serves for a name.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cryptography import x509

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.fleet_serve import FleetProcess, fleet_serve_process
from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import stop_process, wait_ready

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


def _listening(ports: tuple[int, ...]) -> bool:
    for port in ports:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((LOOPBACK, port)) != 0:
                return False
    return True


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
            wait_ready(proc, partial(_listening, ports), prefix / "error.log", "nginx")
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


def check_served(edge: NginxEdge, name: str, root: Path, names: Sequence[str], serial: str) -> None:
    """Through `edge` with SNI `name`: `acmekit check` verifies a certificate for exactly
    `names` with days left, and the leaf served has the serial `serial` (hex)."""
    shown = acmekit_check(edge, name, root)
    assert shown["verify"] == "ok", shown
    assert shown["names"].split() == sorted(names), shown
    assert int(shown["days left"]) >= 1, shown
    assert served_serial(edge, name, root) == serial


@dataclass(frozen=True)
class EdgeFleet:
    """What `running_edge_fleet` runs: edges A and B, the DNS server, the CA, the fleet."""

    edges: tuple[NginxEdge, NginxEdge]
    dns: DnsServerHandle
    ca: ServerHandle
    fleet: FleetProcess


@contextmanager
def running_edge_fleet(
    workdir: Path, aliases: Mapping[str, str], *, delegation_zone: str | None = None
) -> Iterator[EdgeFleet]:
    """Two nginx edges (`nginx-a`, `nginx-b` in `workdir`) in front of `acmekit fleet
    serve`, which deploys to both and orders from `acmekit server`; the CA validates
    http-01 on edge A's port and asks `acmekit dns` for every name. With
    `delegation_zone`, the fleet also does dns-01 through CNAMEs into that zone of
    `acmekit dns`. Everything is stopped by its PID when the block ends."""
    fleet_http01 = free_port()
    with (
        running_nginx_edge(
            workdir / "nginx-a", challenge_upstream=fleet_http01, aliases=aliases
        ) as edge_a,
        running_nginx_edge(
            workdir / "nginx-b", challenge_upstream=fleet_http01, aliases=aliases
        ) as edge_b,
        dns_server_process(workdir) as dns,
        running_acmekit_server(workdir, dns_port=dns.dns_port, http01_port=edge_a.http_port) as ca,
    ):
        args = []
        if delegation_zone is not None:
            args = ["--dns-api", dns.api_url, "--dns-resolver", dns.resolver,
                    "--delegation-zone", delegation_zone]  # fmt: skip
        with fleet_serve_process(
            workdir,
            server=ca,
            http01_port=fleet_http01,
            edges=[edge_a.edge_spec, edge_b.edge_spec],
            args=args,
        ) as fleet:
            yield EdgeFleet((edge_a, edge_b), dns, ca, fleet)

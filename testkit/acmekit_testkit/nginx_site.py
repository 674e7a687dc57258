"""Debian's nginx with a site configuration of several server blocks, for the `--nginx`
plugin's tests: one nginx per test directory, on loopback ports.

    with running_nginx_site(tmp_path / "nginx", http_port) as site:
        site.server_root, site.http_port, site.https_port, site.snapshot()

The configuration is in `server_root` (`nginx.conf`, `sites/*.conf` included by a
relative glob, `snippets/`), and every path nginx writes is under it too (pid file,
logs, temp files), so the plugin's `nginx -c SERVER_ROOT/nginx.conf -s reload` finds
this master by its pid file. nginx runs in the foreground (`daemon off;`), so the
process started here is the master and is stopped by its PID.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import stop_process, wait_ready

LOOPBACK = "127.0.0.1"


def site_files(root: Path, http_port: int) -> dict[str, str]:
    """The files of the test configuration, relative to `root`."""
    temp = "".join(
        f"    {kind}_temp_path {root}/tmp/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    listen = f"{LOOPBACK}:{http_port}"
    return {
        "nginx.conf": f"""# the plugin's test configuration
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 64; }}

http {{
    access_log {root}/access.log;
{temp}    default_type application/octet-stream;
    include sites/*.conf;

    # every name no block has: refused at server level
    server {{
        listen {listen} default_server;
        server_name _;
        return 404;
    }}
}}
""",
        "sites/a.conf": f"""server {{
    listen {listen};
    server_name a.nginx.test www.a.nginx.test;  # two names, one block

    location / {{
        return 200 "site a\\n";
    }}
}}
""",
        "sites/wild.conf": f"""server {{
    listen {listen};
    server_name *.wild.nginx.test;
    include snippets/wild.conf;
}}
""",
        "snippets/wild.conf": 'location / { return 200 "wild\\n"; }\n',
    }


@dataclass(frozen=True)
class NginxSite:
    server_root: Path
    http_port: int
    pid: int

    def snapshot(self) -> dict[str, bytes]:
        """Every configuration file's bytes, by path relative to the server root."""
        return {
            str(p.relative_to(self.server_root)): p.read_bytes()
            for p in sorted(self.server_root.rglob("*.conf"))
        }

    def error_log(self) -> str:
        path = self.server_root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def get(self, host: str, path: str = "/", port: int | None = None) -> tuple[int, str, str]:
        """GET over plain HTTP with this Host: status, Location header, body."""
        conn = http.client.HTTPConnection(LOOPBACK, port or self.http_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Location") or "", resp.read().decode()
        finally:
            conn.close()

    def wait_for(
        self, host: str, path: str, expected: tuple[int, str | None], timeout: float = 20
    ) -> tuple[int, str]:
        """Poll until GET answers `expected` (status, and body unless None) five times in
        a row: during a reload old and new workers both accept for a while, so one answer
        from a new worker does not mean the old ones are gone. The last answer is
        returned either way."""
        deadline = time.monotonic() + timeout
        want_status, want_body = expected
        in_a_row = 0
        while True:
            status, _, body = self.get(host, path)
            in_a_row = in_a_row + 1 if status == want_status and want_body in (None, body) else 0
            if in_a_row >= 5:
                return status, body
            if time.monotonic() > deadline:
                return status, body
            time.sleep(0.05)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


@contextmanager
def running_nginx_site(server_root: Path, http_port: int | None = None) -> Iterator[NginxSite]:
    """nginx with `site_files` in `server_root` on `http_port` (a free one by default)."""
    port = http_port or free_port()
    for rel, text in site_files(server_root, port).items():
        path = server_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (server_root / "tmp").mkdir(exist_ok=True)
    conf = server_root / "nginx.conf"
    argv = ["nginx", "-c", str(conf), "-e", str(server_root / "error.log"), "-g", "daemon off;"]
    with (server_root / "stderr.log").open("ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_ready(proc, partial(_listening, port), server_root / "error.log", "nginx")
        yield NginxSite(server_root, port, proc.pid)
    finally:
        stop_process(proc)

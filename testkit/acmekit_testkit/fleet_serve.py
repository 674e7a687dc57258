"""`acmekit fleet serve` as a real process, and a small JSON client for its API.

    with fleet_serve_process(tmp_path, server=ca, http01_port=P, edges=[...]) as fleet:
        site = fleet.add(["a.fleet.test"])
        fleet.wait_for(site["id"], lambda s: s["state"] == "active")

Without `server`, `args` name the CAs (`--ca NAME=URL,...`) and anything else.
`fleet.cli(...)` runs another `acmekit fleet` command against the same inventory.

The process prints `api: http://HOST:PORT/domains` once it listens; it is stopped by its
PID (SIGTERM, which the command handles) when the block ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acmekit_testkit.acmekit_server import ServerHandle
from acmekit_testkit.processes import logged_process, wait_for_lines

LOOPBACK = "127.0.0.1"
Site = dict[str, Any]


@dataclass(frozen=True)
class FleetProcess:
    base_url: str  # http://127.0.0.1:PORT
    db: Path
    log: Path
    pid: int

    def request(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        """(status, decoded JSON) for one API call; errors are answers too."""
        data = None if doc is None else json.dumps(doc).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as resp:
            body: bytes = resp.read()
        return body.decode()

    def add(self, names: Sequence[str], **extra: Any) -> Site:
        status, site = self.request("POST", "/domains", {"names": list(names), **extra})
        assert status == 201, site
        return site  # type: ignore[no-any-return]

    def cli(self, *args: str) -> str:
        """`acmekit fleet ARGS --db THIS_DB` as a process; its standard output."""
        argv = [sys.executable, "-m", "acmekit", "fleet", *args, "--db", f"sqlite:///{self.db}"]
        done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout.decode()

    def wait_for(self, site_id: str, done: Callable[[Site], bool], timeout: float = 90) -> Site:
        """Poll the site until `done` holds; the site as last seen."""
        deadline = time.monotonic() + timeout
        site: Site = {}
        while time.monotonic() < deadline:
            status, site = self.request("GET", f"/domains/{site_id}")
            assert status == 200, site
            if done(site):
                return site
            time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-4000:]
        raise AssertionError(f"site {site_id} never got there: {site}\nfleet log:\n{tail}")


def fleet_args(server: ServerHandle | None, edges: Sequence[str]) -> list[str]:
    """The CA (`--server`, `--ca-bundle`; none without `server`) and `--edge`s of a fleet
    command."""
    args = [] if server is None else server.client_args()
    for edge in edges:
        args += ["--edge", edge]
    return args


@contextmanager
def fleet_serve_process(
    workdir: Path,
    *,
    server: ServerHandle | None = None,
    http01_port: int,
    edges: Sequence[str],
    args: Sequence[str] = (),
) -> Iterator[FleetProcess]:
    """`acmekit fleet serve` against `server` (or the CAs in `args`), answering http-01
    on `http01_port`."""
    db = workdir / "fleet.db"
    argv = [
        sys.executable, "-m", "acmekit", "-v", "fleet", "serve",
        "--db", f"sqlite:///{db}",
        "--listen", f"{LOOPBACK}:0",
        "--http01-listen", f"{LOOPBACK}:{http01_port}",
        *args,
    ]  # fmt: skip
    argv += fleet_args(server, edges)
    log = workdir / f"fleet-{time.monotonic_ns()}.log"
    with logged_process(argv, log) as proc:
        api = wait_for_lines(proc, log, ("api: ",), "acmekit fleet serve")["api: "]
        yield FleetProcess(api.removesuffix("/domains"), db, log, proc.pid)

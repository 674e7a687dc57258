"""A PostgreSQL cluster of a test's own, for tests that stop and restart the database
under a running CA (the shared server on 127.0.0.1:5432 serves other tests meanwhile).

`initdb` refuses to run as root, so when the test runs as root the cluster's files belong
to the `postgres` user and its programs run as that user (`runuser`). The cluster listens
on 127.0.0.1 on a free port, its socket in its own directory, with fsync off (a test's
data need not survive a power cut, only a restart).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from acmekit_testkit.ports import free_port

RUN_AS = "postgres"


def postgres_bin(program: str) -> str:
    """The newest installed PostgreSQL's `program` (initdb, pg_ctl)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    if not found:
        found = [p for p in [shutil.which(program)] if p]
    if not found:
        raise FileNotFoundError(f"{program} (a PostgreSQL server installation) is not installed")
    return found[-1]


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *argv] if os.geteuid() == 0 else argv


@dataclass(frozen=True)
class PostgresCluster:
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        """The `postgres` database, as `acmekit server --db` takes it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        argv = [postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w"]
        subprocess.run(_as_owner([*argv, "-o", options, *args]), check=True, capture_output=True)

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        """A fast shutdown: open transactions are rolled back, clients disconnected."""
        self._pg_ctl("-m", "fast", "stop")

    def restart(self) -> None:
        self._pg_ctl("-m", "fast", "restart")


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """initdb a new cluster, start it, yield it; stop it and remove its files at the end."""
    root = Path(tempfile.mkdtemp(prefix="acmekit-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, RUN_AS)
        cluster = PostgresCluster(root, free_port())
        initdb = [postgres_bin("initdb"), "-D", str(cluster.data), "-U", "postgres"]
        subprocess.run(
            _as_owner([*initdb, "-A", "trust", "-E", "UTF8", "--no-sync"]),
            check=True,
            capture_output=True,
        )
        cluster.start()
        try:
            yield cluster
        finally:
            if (cluster.data / "postmaster.pid").exists():
                cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)

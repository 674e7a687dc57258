"""`acmekit fleet worker` as real processes, and the fleet's http-01 responder beside them.

    with fleet_http01_responder(db_url) as port, fleet_worker_process(tmp_path, ...) as w:
        w.owner, w.pid, w.kill()

A worker prints `worker: OWNER` once it runs; it is stopped by its PID when the block
ends (unless the test SIGKILLed it first). The responder serves the inventory's
http-01 answers (the same app `fleet serve --http01-listen` runs) on a free loopback
port, from a thread of the test process: answers live in the inventory, so it answers
for whichever worker opened the order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from acmekit.fleet.api import challenge_app
from acmekit.fleet.inventory import Inventory
from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.fleet_serve import fleet_args
from acmekit_testkit.processes import logged_process, wait_for_lines

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class WorkerProcess:
    owner: str  # the lease owner it writes into the inventory
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL by PID: no handler runs, leases stay taken, as after a crash."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextmanager
def fleet_worker_process(
    workdir: Path,
    *,
    db: str,
    server: ServerHandle | None = None,
    edges: Sequence[str] = (),
    args: Sequence[str] = (),
) -> Iterator[WorkerProcess]:
    """`acmekit fleet worker --db DB --server CA ...`; stopped by PID at the end. Without
    `server`, `args` name the CAs (`--ca NAME=URL,...`)."""
    argv = [sys.executable, "-m", "acmekit", "-v", "fleet", "worker", "--db", db, *args]
    argv += fleet_args(server, edges)
    log = workdir / f"fleet-worker-{time.monotonic_ns()}.log"
    with logged_process(argv, log) as proc:
        owner = wait_for_lines(proc, log, ("worker: ",), "acmekit fleet worker")["worker: "]
        yield WorkerProcess(owner, log, proc)


@contextmanager
def fleet_http01_responder(db: str) -> Iterator[int]:
    """The inventory's http-01 answers on a free loopback port (yielded)."""
    started = threading.Event()
    stopping: list[asyncio.AbstractEventLoop] = []
    port: list[int] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        inventory = Inventory.from_url(db)
        runner = web.AppRunner(challenge_app(inventory), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        port.append(int(runner.addresses[0][1]))
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopping.append(loop)
        loop.call_soon(started.set)
        try:
            await done.wait()
        finally:
            await runner.cleanup()
            inventory.close()

    def main() -> None:
        try:
            asyncio.run(serve())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not started.wait(30) or failure:
        raise RuntimeError(f"http-01 responder did not start: {failure}")
    try:
        yield port[0]
    finally:
        loop = stopping[0]

        def cancel_all() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()

        loop.call_soon_threadsafe(cancel_all)
        thread.join(timeout=10)


@contextmanager
def worker_peers(
    workdir: Path, ca_settings: dict[str, Any] | None = None
) -> Iterator[tuple[str, ServerHandle]]:
    """What fleet workers work with: a fresh PostgreSQL inventory, the fleet's http-01
    responder answering from it, and `acmekit server` (with `ca_settings` in its config)
    validating through that responder and `acmekit dns`; yields (the inventory's URL,
    the CA)."""
    with (
        fresh_postgres_database() as db,
        fleet_http01_responder(db) as http01,
        dns_server_process(workdir) as dns,
        running_acmekit_server(
            workdir, dns_port=dns.dns_port, http01_port=http01, settings=ca_settings
        ) as ca,
    ):
        yield db, ca

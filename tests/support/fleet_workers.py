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

from aiohttp import web

from acmekit.fleet.api import challenge_app
from acmekit.fleet.inventory import Inventory
from support.acmekit_server import ServerHandle
from support.pebble import stop_process

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


def _wait_for_owner(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("worker: "):
                return line.removeprefix("worker: ").strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"acmekit fleet worker did not start:\n{log.read_text()[-3000:]}")


@contextmanager
def fleet_worker_process(
    workdir: Path,
    *,
    db: str,
    server: ServerHandle,
    edges: Sequence[str] = (),
    args: Sequence[str] = (),
) -> Iterator[WorkerProcess]:
    """`acmekit fleet worker --db DB --server CA ...`; stopped by PID at the end."""
    argv = [
        sys.executable, "-m", "acmekit", "-v", "fleet", "worker",
        "--db", db,
        "--server", server.directory_url,
        "--ca-bundle", str(server.root_path),
        *args,
    ]  # fmt: skip
    for edge in edges:
        argv += ["--edge", edge]
    log = workdir / f"fleet-worker-{time.monotonic_ns()}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield WorkerProcess(_wait_for_owner(proc, log), log, proc)
    finally:
        stop_process(proc)


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

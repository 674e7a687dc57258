"""Our challenge DNS server (`acmekit dns`) for tests, in-process or as a subprocess.

    async with running_dns_server(default_ipv4="127.0.0.1") as dns_server:
        await dns_server.set_txt("_acme-challenge.a.test.", value)
        resolver = dns_server.resolver          # "127.0.0.1:PORT" for --dns-resolver

    with dns_server_process(tmp_path, "--zone", "x.test") as dns_server:
        dns_server.set_txt_sync("_acme-challenge.x.test.", value)

Both bind port 0 (UDP and TCP on one port, plus the HTTP API) so tests run in parallel.
The subprocess is stopped by its PID when the block ends.
"""

from __future__ import annotations

import json
import os
import resource
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from acmekit.dns.service import DnsConfig, DnsService
from acmekit_testkit.processes import stop_process

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class DnsServerHandle:
    dns_port: int
    api_url: str
    host: str = LOOPBACK
    api_token: str | None = None
    pid: int | None = None  # set for the subprocess variant

    @property
    def resolver(self) -> str:
        """HOST:PORT, the form `--dns-resolver`, Pebble's -dnsserver and lego take."""
        return f"{self.host}:{self.dns_port}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"} if self.api_token else {}

    async def post(self, path: str, doc: dict[str, Any]) -> Any:
        """POST JSON to the API; the decoded JSON answer, or None for an empty one."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.api_url + path, json=doc, headers=self._headers()) as resp,
        ):
            body = await resp.read()
            resp.raise_for_status()
            return json.loads(body) if body else None

    async def set_txt(self, host: str, value: str) -> None:
        await self.post("/set-txt", {"host": host, "value": value})

    async def clear_txt(self, host: str) -> None:
        await self.post("/clear-txt", {"host": host})

    def post_sync(self, path: str, doc: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            self.api_url + path,
            data=json.dumps(doc).encode(),
            headers={"Content-Type": "application/json", **self._headers()},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            return json.loads(body) if body else None

    def set_txt_sync(self, host: str, value: str) -> None:
        self.post_sync("/set-txt", {"host": host, "value": value})

    def clear_txt_sync(self, host: str) -> None:
        self.post_sync("/clear-txt", {"host": host})


@asynccontextmanager
async def running_dns_server(
    default_ipv4: str | None = LOOPBACK,
    *,
    default_ipv6: str | None = None,
    zones: tuple[str, ...] = (),
    tsig_keys: tuple[str, ...] = (),
    state: Path | None = None,
    api_token: str | None = None,
    allow_transfer: tuple[str, ...] = (),
    allow_update: tuple[str, ...] = (),
    db: str | None = None,
) -> AsyncIterator[DnsServerHandle]:
    """Our DNS server in this event loop, on free loopback ports."""
    config = DnsConfig(
        listen_port=0,
        api_port=0,
        default_ipv4=default_ipv4,
        default_ipv6=default_ipv6,
        zones=zones,
        tsig_keys=tsig_keys,
        state=state,
        api_token=api_token,
        allow_transfer=allow_transfer,
        allow_update=allow_update,
        db=db,
    )
    service = DnsService(config)
    await service.start()
    try:
        assert service.api_url is not None
        yield DnsServerHandle(service.dns_port, service.api_url, api_token=api_token)
    finally:
        await service.stop()


def read_banner(proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline().decode()
            if line.startswith("dns: "):
                return line.strip()
        if proc.poll() is not None:
            break
    raise RuntimeError(f"acmekit dns did not start:\n{log.read_text()[-2000:]}")


def parse_banner(line: str) -> tuple[int, str]:
    """("dns: udp+tcp 127.0.0.1:PORT, api http://127.0.0.1:PORT") -> (dns port, api URL)."""
    listener, _, api = line.removeprefix("dns: udp+tcp ").partition(", api ")
    return int(listener.rsplit(":", 1)[1]), api


def _limit_open_files(soft: int) -> Callable[[], None]:
    def limit() -> None:  # in the child, before it runs the server
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return limit


@contextmanager
def dns_server_process(
    tmp_path: Path,
    *args: str,
    default_ipv4: str | None = LOOPBACK,
    api_token: str | None = None,
    open_files: int | None = None,
) -> Iterator[DnsServerHandle]:
    """`acmekit dns` as a separate process; extra command-line `args` are passed on.
    `open_files` lowers its soft limit on file descriptors (RLIMIT_NOFILE)."""
    argv = [sys.executable, "-m", "acmekit", "dns", "--listen", f"{LOOPBACK}:0"]
    argv += ["--api", f"{LOOPBACK}:0", *args]
    if default_ipv4:
        argv += ["--default-ipv4", default_ipv4]
    if api_token:
        argv += ["--api-token", api_token]
    log = tmp_path / f"acmekit-dns-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=None if open_files is None else _limit_open_files(open_files),
        )
    try:
        dns_port, api_url = parse_banner(read_banner(proc, log))
        yield DnsServerHandle(dns_port, api_url, api_token=api_token, pid=proc.pid)
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()

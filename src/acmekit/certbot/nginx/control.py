"""Running nginx's own commands: the configuration test and the reload.

As certbot does: `NGINX_CTL -c SERVER_ROOT/nginx.conf -t` before anything is changed
and after every edit; `NGINX_CTL -c CONF -s reload` to make the running master read
it (the master's pid comes from the configuration's `pid` file); if no nginx runs,
`NGINX_CTL -c CONF` starts one. A reload returns before the new workers serve, so the
caller waits `--nginx-sleep-seconds` after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from acmekit.certbot.locks import POLL_INTERVAL, try_lock
from acmekit.client.errors import ClientError

log = logging.getLogger(__name__)

DEFAULT_SERVER_ROOT = "/etc/nginx"
DEFAULT_CTL = "nginx"
DEFAULT_SLEEP_SECONDS = 1.0
LOCK_WAIT_SECONDS = 300.0
LOCK_FILE = ".acmekit.lock"


class NginxError(ClientError):
    """nginx refused the configuration or could not be told to reload; the message
    carries nginx's own words."""


@dataclass(frozen=True)
class NginxControl:
    server_root: Path
    ctl: str = DEFAULT_CTL
    sleep_seconds: float = DEFAULT_SLEEP_SECONDS

    @property
    def conf(self) -> Path:
        return self.server_root.absolute() / "nginx.conf"

    async def _run(self, *args: str) -> tuple[int, str]:
        argv = [*shlex.split(self.ctl), "-c", str(self.conf), *args]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise NginxError(f"cannot run {argv[0]} (--nginx-ctl): {exc.strerror}") from exc
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace").strip()

    async def test(self) -> None:
        """`nginx -t`; NginxError with nginx's message when the configuration is bad."""
        code, out = await self._run("-t")
        if code != 0:
            lines = [ln for ln in out.splitlines() if "[emerg]" in ln or "[alert]" in ln]
            raise NginxError("nginx -t failed: " + " ".join(lines or out.splitlines()[-1:]))

    async def reload(self) -> None:
        """Tell the running nginx to read its configuration again (start it if none runs),
        then wait for its new workers."""
        code, out = await self._run("-s", "reload")
        if code != 0:
            log.info("nginx reload failed (%s); starting nginx", out)
            code, started = await self._run()
            if code != 0:
                raise NginxError(f"nginx could not be reloaded ({out}) nor started ({started})")
        if self.sleep_seconds > 0:
            await asyncio.sleep(self.sleep_seconds)


class NginxLock:
    """One editor of an nginx configuration at a time, across processes: `flock` on
    `SERVER_ROOT/.acmekit.lock` (certbot locks its server root the same way), held from
    the first edit until the files are back. Runs for different certificates each take
    their turn, so one never saves another's temporary edit as the original."""

    def __init__(self, server_root: Path, wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        self.path = server_root.absolute() / LOCK_FILE
        self.wait_seconds = wait_seconds
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    async def acquire(self) -> None:
        if self._fd is not None:
            return
        if not (self.path.parent / "nginx.conf").is_file():
            raise NginxError(f"no {self.path.parent / 'nginx.conf'} (see --nginx-server-root)")
        deadline = time.monotonic() + self.wait_seconds
        while (fd := try_lock(self.path)) is None:
            if time.monotonic() >= deadline:
                raise NginxError(f"another run is editing the nginx configuration ({self.path})")
            await asyncio.sleep(POLL_INTERVAL)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@asynccontextmanager
async def nginx_lock(server_root: Path) -> AsyncIterator[None]:
    lock = NginxLock(server_root)
    await lock.acquire()
    try:
        yield
    finally:
        lock.release()

"""Putting certificates on edges: the Deployer seam and a directory-per-site deployer.

A Deployer has a `name` (the edge, as recorded per site in the inventory), `deploy`
and `remove`. A failure raises DeployError; the worker records it for that edge and
retries later with back-off, while the other edges proceed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Protocol

from acmekit.files import atomic_write_together, make_dirs
from acmekit.fleet.model import Site

log = logging.getLogger(__name__)


class DeployError(Exception):
    """A certificate could not be put on (or taken off) an edge."""


class Deployer(Protocol):
    name: str

    async def deploy(self, site: Site, fullchain_pem: bytes, key_pem: bytes) -> None: ...

    async def remove(self, site: Site) -> None: ...


def directory_name(name: str) -> str:
    """The directory for a site's first name; a wildcard's `*` becomes `_`."""
    safe = name.replace("*", "_")
    if not safe or "/" in safe or safe.startswith("."):
        raise DeployError(f"{name!r} cannot name a directory")
    return safe


class DirectoryDeployer:
    """Writes `CERT_DIR/NAME/fullchain.pem` and `privkey.pem` (mode 0600), each
    atomically, then runs `reload_command` (a shell command) if there is one."""

    def __init__(self, cert_dir: Path, reload_command: str | None = None) -> None:
        self.cert_dir = cert_dir
        self.reload_command = reload_command
        self.name = str(cert_dir)

    async def deploy(self, site: Site, fullchain_pem: bytes, key_pem: bytes) -> None:
        try:
            await asyncio.to_thread(self._write, site, fullchain_pem, key_pem)
        except OSError as exc:
            raise DeployError(f"writing {site.name} to {self.cert_dir}: {exc}") from exc
        await self._reload()

    def _write(self, site: Site, fullchain_pem: bytes, key_pem: bytes) -> None:
        target = self.cert_dir / directory_name(site.name)
        make_dirs(target, 0o755)
        # Both written before either is replaced: a write that fails (a full disk) must
        # not leave the new key beside the old certificate, a pair no edge can load.
        atomic_write_together(
            [
                (target / "privkey.pem", key_pem, 0o600),
                (target / "fullchain.pem", fullchain_pem, 0o644),
            ]
        )

    async def remove(self, site: Site) -> None:
        target = self.cert_dir / directory_name(site.name)
        try:
            await asyncio.to_thread(shutil.rmtree, target, ignore_errors=False)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DeployError(f"removing {site.name} from {self.cert_dir}: {exc}") from exc
        await self._reload()

    async def _reload(self) -> None:
        if not self.reload_command:
            return
        proc = await asyncio.create_subprocess_shell(
            self.reload_command,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()[-500:]
            raise DeployError(f"reload for {self.cert_dir} exited {proc.returncode}: {detail}")
        log.debug("reloaded edge %s", self.name)


def parse_edge(spec: str) -> DirectoryDeployer:
    """`DIR[:RELOAD_CMD]`, as `--edge` takes it."""
    path, sep, command = spec.partition(":")
    if not path:
        raise ValueError(f"--edge {spec!r}: expected DIR[:RELOAD_CMD]")
    return DirectoryDeployer(Path(path), command if sep and command else None)

"""Hooks as certbot runs them: shell commands and executables in `renewal-hooks/`.

- pre hooks run once per run, before the first certificate is requested, each distinct
  command once: first the executables in `renewal-hooks/pre/` (only for `renew`),
  then `--pre-hook` and the lineages' saved pre hooks.
- deploy hooks run after each successful issuance with RENEWED_LINEAGE (the live
  directory) and RENEWED_DOMAINS (space separated): `renewal-hooks/deploy/` (renew
  only), then the lineage's or the command line's deploy hook. Never on a dry run.
- post hooks run once at the end when something was requested, each distinct command
  once, with RENEWED_DOMAINS and FAILED_DOMAINS of the whole run.

Directory hooks are the executable regular files, sorted, skipping names ending in
`~`. A hook that fails is reported; it does not undo the certificate it follows, and
(as in certbot) it does not make the command fail. What a hook writes is shown as
certbot shows it: its stdout as "Hook 'deploy-hook' ran with output:" and the lines
indented, its stderr as a warning "Hook 'deploy-hook' ran with error output:".

A hook runs in a process group of its own, stopped with all it started when the run
is cancelled (`acmekit.hookprocs`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from acmekit.hookprocs import run_shell

log = logging.getLogger(__name__)


class HookKind(StrEnum):
    PRE = "pre"
    DEPLOY = "deploy"
    POST = "post"


@dataclass(frozen=True)
class HookResult:
    kind: HookKind
    command: str
    returncode: int
    output: str


def directory_hooks(config_dir: Path, kind: HookKind) -> list[str]:
    folder = config_dir / "renewal-hooks" / kind.value
    if not folder.is_dir():
        return []
    return sorted(
        str(p)
        for p in folder.iterdir()
        if p.is_file() and os.access(p, os.X_OK) and not p.name.endswith("~")
    )


def deploy_env(lineage_dir: Path, domains: Sequence[str]) -> dict[str, str]:
    return {"RENEWED_LINEAGE": str(lineage_dir), "RENEWED_DOMAINS": " ".join(domains)}


def post_env(renewed: Sequence[str], failed: Sequence[str]) -> dict[str, str]:
    return {"RENEWED_DOMAINS": " ".join(renewed), "FAILED_DOMAINS": " ".join(failed)}


def _indented(text: str) -> str:
    return "\n".join(f" {line}" for line in text.splitlines())


async def run_hook(
    kind: HookKind, command: str, env: Mapping[str, str], show: Callable[[str], None] = print
) -> HookResult:
    """Run `command` through the shell with `env` added to ours; `show` prints its
    output for the user (certbot's display_ops.report_executed_command)."""
    log.info("Running %s-hook command: %s", kind, command)
    code, out, err = await run_shell(command, env)
    text, errors = out.decode("utf-8", "replace").strip(), err.decode("utf-8", "replace").strip()
    name = f"Hook '{kind}-hook'"
    if code != 0:
        log.warning("%s reported error code %d", name, code)
    if text:
        show(f"{name} ran with output:\n{_indented(text)}")
    if errors:
        log.warning("%s ran with error output:\n%s", name, _indented(errors))
    return HookResult(kind, command, code, text)


@dataclass
class HookRunner:
    """Runs each distinct pre and post command once per run, in the order first seen."""

    config_dir: Path
    use_directories: bool
    show: Callable[[str], None] = print
    failures: list[HookResult] = field(default_factory=list)
    _pre_done: set[str] = field(default_factory=set)
    _post: list[str] = field(default_factory=list)

    async def _run(self, kind: HookKind, command: str, env: Mapping[str, str]) -> None:
        result = await run_hook(kind, command, env, self.show)
        if result.returncode != 0:
            self.failures.append(result)

    async def pre(self, commands: Sequence[str | None]) -> None:
        dirs = directory_hooks(self.config_dir, HookKind.PRE) if self.use_directories else []
        for command in [*dirs, *commands]:
            if command and command not in self._pre_done:
                self._pre_done.add(command)
                await self._run(HookKind.PRE, command, {})

    def schedule_post(self, commands: Sequence[str | None]) -> None:
        dirs = directory_hooks(self.config_dir, HookKind.POST) if self.use_directories else []
        for command in [*dirs, *commands]:
            if command and command not in self._post:
                self._post.append(command)

    async def deploy(
        self,
        command: str | None,
        lineage_dir: Path,
        domains: Sequence[str],
        directories: bool | None = None,
    ) -> None:
        """`directories` (default: as for pre and post hooks) says whether
        `renewal-hooks/deploy/` runs: certbot runs it for every new version of an existing
        lineage (its renew_hook), `certonly` too, but not for a new lineage."""
        env = deploy_env(lineage_dir, domains)
        use = self.use_directories if directories is None else directories
        dirs = directory_hooks(self.config_dir, HookKind.DEPLOY) if use else []
        for hook in dirs:
            await self._run(HookKind.DEPLOY, hook, env)
        if command and command not in dirs:
            await self._run(HookKind.DEPLOY, command, env)

    async def post(self, renewed: Sequence[str], failed: Sequence[str]) -> None:
        env = post_env(renewed, failed)
        for command in self._post:
            await self._run(HookKind.POST, command, env)

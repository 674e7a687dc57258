"""Hooks as certbot runs them (stopped with what they started when the run is
cancelled), and per-lineage locks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from acmekit.certbot.hooks import HookKind, HookRunner, directory_hooks, run_hook
from acmekit.certbot.locks import lock_path, try_lock
from acmekit.client.solvers import manual
from acmekit.client.solvers.dnshook import HookDnsProvider
from acmekit_testkit.processes import alive
from acmekit_testkit.waits import until


def _script(path: Path, body: str, executable: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755 if executable else 0o644)


def test_directory_hooks_are_sorted_executables(tmp_path: Path) -> None:
    folder = tmp_path / "renewal-hooks" / "deploy"
    _script(folder / "20-b", "true")
    _script(folder / "10-a", "true")
    _script(folder / "30-c~", "true")
    _script(folder / "40-not-exec", "true", executable=False)
    assert directory_hooks(tmp_path, HookKind.DEPLOY) == [
        str(folder / "10-a"),
        str(folder / "20-b"),
    ]
    assert directory_hooks(tmp_path, HookKind.PRE) == []


async def test_deploy_hooks_see_lineage_and_domains(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    _script(tmp_path / "renewal-hooks/deploy/dir-hook", f'echo "dir $RENEWED_LINEAGE" >> {out}')
    runner = HookRunner(tmp_path, use_directories=True)
    live = tmp_path / "live" / "a.test"
    await runner.deploy(f'echo "cli $RENEWED_DOMAINS" >> {out}', live, ["a.test", "b.test"])
    assert out.read_text().splitlines() == [f"dir {live}", "cli a.test b.test"]
    assert runner.failures == []


async def test_pre_and_post_run_each_command_once(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    runner = HookRunner(tmp_path, use_directories=True)
    pre = f"echo pre >> {out}"
    post = f'echo "post renewed=$RENEWED_DOMAINS failed=$FAILED_DOMAINS" >> {out}'
    for _ in range(3):  # three lineages with the same hooks
        await runner.pre([pre, None])
        runner.schedule_post([post])
    await runner.post(["a.test"], ["b.test", "c.test"])
    assert out.read_text().splitlines() == ["pre", "post renewed=a.test failed=b.test c.test"]


async def test_failing_hook_is_reported(tmp_path: Path) -> None:
    result = await run_hook(HookKind.POST, "echo broken; exit 3", {})
    assert (result.returncode, result.output.strip()) == (3, "broken")
    runner = HookRunner(tmp_path, use_directories=False)
    await runner.pre(["exit 1"])
    assert [f.command for f in runner.failures] == ["exit 1"]


def test_lineage_lock_is_exclusive_per_name(tmp_path: Path) -> None:
    first = try_lock(lock_path(tmp_path, "a.test"))
    assert first is not None
    try:
        assert try_lock(lock_path(tmp_path, "a.test")) is None
        other = try_lock(lock_path(tmp_path, "b.test"))
        assert other is not None
    finally:
        import os

        os.close(first)
    again = try_lock(lock_path(tmp_path, "a.test"))
    assert again is not None


HOOKS: dict[str, Callable[[str], Awaitable[object]]] = {
    "deploy": lambda script: run_hook(HookKind.DEPLOY, script, {}),
    "manual": lambda script: manual.run_hook("manual-auth-hook", script, {}),
    "dns": lambda script: HookDnsProvider(script).add_txt("a.test", "value"),
}


@pytest.mark.parametrize("kind", sorted(HOOKS))
async def test_a_cancelled_run_stops_what_its_hook_started(tmp_path: Path, kind: str) -> None:
    """Ctrl-C (or SIGTERM) while a hook runs: the hook's shell and its children stop
    with the run, none left running unowned."""
    started = tmp_path / "started"
    _script(
        tmp_path / "hook", f"sleep 300 & echo $! > {started}.new; mv {started}.new {started}; wait"
    )
    task = asyncio.create_task(HOOKS[kind](str(tmp_path / "hook")))
    await until(lambda: started.exists() or task.done())
    child = int(started.read_text())
    assert alive(child)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: not alive(child))

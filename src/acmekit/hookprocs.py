"""Commands the client runs for the user (deploy, pre and post hooks, manual and DNS
hooks), each in a process group of its own, stopped with everything it started when the
run is cancelled.

A cancelled run (Ctrl-C, or a SIGTERM, which the command line turns into one) that only
killed the shell would leave what the shell started running on, unowned: a web server's
reload half done, a copy still writing, a DNS update made after the run's cleanup. So
the group gets SIGTERM, and SIGKILL once the shell has exited or `STOP_GRACE` seconds
have passed; the run waits for the shell before it goes on unwinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

# Seconds a cancelled hook's process group has to exit after SIGTERM before SIGKILL.
STOP_GRACE = 10.0


async def run_shell(command: str, env: Mapping[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """`command` through the shell, `env` added to ours: its exit status and output."""
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=None if env is None else {**os.environ, **env},
        process_group=0,  # its own group, so that all it starts can be stopped with it
    )
    return await _finish(proc)


async def run_exec(argv: Sequence[str]) -> tuple[int, bytes, bytes]:
    """`argv` run directly: its exit status and output."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        process_group=0,
    )
    return await _finish(proc)


async def _finish(proc: asyncio.subprocess.Process) -> tuple[int, bytes, bytes]:
    try:
        out, err = await proc.communicate()
    except BaseException:  # cancelled: the command must not outlive the run
        await stop_group(proc)
        raise
    return (proc.returncode if proc.returncode is not None else -1), out, err


async def stop_group(proc: asyncio.subprocess.Process, grace: float = STOP_GRACE) -> None:
    """SIGTERM to the process group `proc` leads, and SIGKILL to what is left of it once
    `proc` has exited or `grace` seconds have passed."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
    except TimeoutError:
        log.warning("hook %d did not stop on SIGTERM; killing its process group", proc.pid)
    finally:
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # the leader itself, should it have left its group
        await proc.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)

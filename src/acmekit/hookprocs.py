"""Commands the client runs for the user (deploy, pre and post hooks, manual and DNS
hooks), each in a process group of its own, stopped with everything it started when the
run is cancelled.

A cancelled run (Ctrl-C, or a SIGTERM, which the command line turns into one) that only
killed the shell would leave what the shell started running on, unowned: a web server's
reload half done, a copy still writing, a DNS update made after the run's cleanup. So
the group gets SIGTERM, and SIGKILL once the shell has exited or `STOP_GRACE` seconds
have passed; the run waits for the shell before it goes on unwinding.

A group of its own is a background job on the run's terminal: a hook that asks there
(sudo's password, ssh's passphrase or host key) would be stopped by SIGTTIN and wait
for ever. So, as a shell does for a job in the foreground, a run that holds its
terminal's foreground hands it to the hook's group while the hook runs and takes it
back after; Ctrl-C then reaches the hook, and a hook it ended ends the run too, as it
would have ended certbot's (whose hooks share its process group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

log = logging.getLogger(__name__)

# Seconds a cancelled hook's process group has to exit after SIGTERM before SIGKILL.
STOP_GRACE = 10.0


async def run_shell(command: str, env: Mapping[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """`command` through the shell, `env` added to ours: its exit status and output."""
    async with _one_at_a_time():
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
    async with _one_at_a_time():
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            process_group=0,
        )
        return await _finish(proc)


# A loop's turns at the terminal (hookprocs is used from one loop at a time, but tests
# run many loops in one process: an asyncio.Lock belongs to the loop that first waits).
_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def _one_at_a_time() -> AsyncIterator[None]:
    """With a controlling terminal, one hook at a time, as certbot runs them: the
    terminal has one foreground group, and two hooks run at once (a DNS hook for each
    name) would take it from each other, the one left in the background stopped for ever
    at its first read there. (Not only while the run holds the foreground: while a hook
    does, the run does not.) Without a terminal (cron, a service), hooks run as asked."""
    if not _has_terminal():
        yield
        return
    loop = asyncio.get_running_loop()
    turn = _TURNS.get(loop)
    if turn is None:
        turn = _TURNS[loop] = asyncio.Lock()
    async with turn:
        yield


def _has_terminal() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:  # no controlling terminal
        return False
    return True


async def _finish(proc: asyncio.subprocess.Process) -> tuple[int, bytes, bytes]:
    with _foreground(proc.pid) as handed:
        try:
            out, err = await proc.communicate()
        except BaseException:  # cancelled: the command must not outlive the run
            await stop_group(proc)
            raise
    if handed and proc.returncode == -signal.SIGINT:
        # Ctrl-C went to the hook alone: the run is interrupted as well, as it would be
        # had the key reached it.
        signal.raise_signal(signal.SIGINT)
        await asyncio.sleep(0)  # the cancellation lands here, before any next hook starts
    return (proc.returncode if proc.returncode is not None else -1), out, err


@contextlib.contextmanager
def _foreground(pgid: int) -> Iterator[bool]:
    """The controlling terminal's foreground given to process group `pgid` while the
    block runs, if this process's group holds it (else nothing changes); whether it was."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:  # no controlling terminal (cron, a service)
        yield False
        return
    try:
        ours = os.getpgrp()
        try:
            held = os.tcgetpgrp(tty) == ours
        except OSError:
            held = False
        if not held:  # run in the background: the hook is too, as certbot's would be
            yield False
            return
        _set_foreground(tty, pgid)
        # A hook that read the terminal before the handover was stopped (SIGTTIN): it
        # goes on, as a shell's `fg` lets it.
        _signal_group(pgid, signal.SIGCONT)
        try:
            yield True
        finally:
            _set_foreground(tty, ours)
    finally:
        os.close(tty)


def _set_foreground(tty: int, pgid: int) -> None:
    # Taking the terminal back from the background sends SIGTTOU, which would stop us.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        with contextlib.suppress(OSError):  # the group is gone, or the terminal
            os.tcsetpgrp(tty, pgid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


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

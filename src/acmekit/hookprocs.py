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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

# Seconds a cancelled hook's process group has to exit after SIGTERM before SIGKILL.
STOP_GRACE = 10.0
# Seconds between looks for a hook stopped on the terminal (`_Job.follow`).
STOP_POLL = 0.2


async def run_shell(command: str, env: Mapping[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """`command` through the shell, `env` added to ours: its exit status and output."""
    return await _run(
        lambda: asyncio.create_subprocess_shell(
            command, env=None if env is None else {**os.environ, **env}, **_SPAWN
        )
    )


async def run_exec(argv: Sequence[str]) -> tuple[int, bytes, bytes]:
    """`argv` run directly: its exit status and output."""
    return await _run(lambda: asyncio.create_subprocess_exec(*argv, **_SPAWN))


_SPAWN: dict[str, Any] = {
    "stdin": asyncio.subprocess.DEVNULL,
    "stdout": asyncio.subprocess.PIPE,
    "stderr": asyncio.subprocess.PIPE,
    "process_group": 0,  # its own group, so that all it starts can be stopped with it
}


async def _run(
    spawn: Callable[[], Awaitable[asyncio.subprocess.Process]],
) -> tuple[int, bytes, bytes]:
    with _terminal() as tty:
        async with _one_at_a_time(tty is not None):
            return await _finish(await spawn(), tty)


# A loop's turns at the terminal (hookprocs is used from one loop at a time, but tests
# run many loops in one process: an asyncio.Lock belongs to the loop that first waits).
_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def _one_at_a_time(terminal: bool) -> AsyncIterator[None]:
    """With a controlling terminal, one hook at a time, as certbot runs them: the
    terminal has one foreground group, and two hooks run at once (a DNS hook for each
    name) would take it from each other, the one left in the background stopped for ever
    at its first read there. (Not only while the run holds the foreground: while a hook
    does, the run does not.) Without a terminal (cron, a service), hooks run as asked."""
    if not terminal:
        yield
        return
    loop = asyncio.get_running_loop()
    turn = _TURNS.get(loop)
    if turn is None:
        turn = _TURNS[loop] = asyncio.Lock()
    async with turn:
        yield


async def _finish(proc: asyncio.subprocess.Process, tty: int | None) -> tuple[int, bytes, bytes]:
    job = _Job(tty, proc.pid)
    talk = asyncio.ensure_future(proc.communicate())
    try:
        job.resume()
        # Without a terminal no job control stops it: no need to look.
        poll = None if tty is None else STOP_POLL
        while not (await asyncio.wait({talk}, timeout=poll))[0]:
            job.follow()
        out, err = talk.result()
    except BaseException:  # cancelled: the command must not outlive the run
        talk.cancel()
        await stop_group(proc)
        raise
    finally:
        handed = job.give_back()
    if handed and proc.returncode == -signal.SIGINT:
        # Ctrl-C went to the hook alone: the run is interrupted as well, as it would be
        # had the key reached it.
        signal.raise_signal(signal.SIGINT)
        await asyncio.sleep(0)  # the cancellation lands here, before any next hook starts
    return (proc.returncode if proc.returncode is not None else -1), out, err


@contextlib.contextmanager
def _terminal() -> Iterator[int | None]:
    """The controlling terminal, open while the block runs; None without one (cron,
    a service)."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        yield None
        return
    try:
        yield tty
    finally:
        os.close(tty)


class _Job:
    """A hook's process group on the run's terminal, kept as a shell keeps a job: it has
    the foreground while the run would (else it is in the background, as certbot's hook
    would be), and its stop is the run's (POSIX job control). A hook stopped alone, by
    Ctrl-Z (SIGTSTP to the foreground it holds) or by a read from the background
    (SIGTTIN), would else wait for ever with the run, and the user's shell, which only
    sees the run, would not get its terminal back: so the run stops with the same
    signal, its shell reports the job stopped, and `fg` goes on with both."""

    def __init__(self, tty: int | None, pgid: int) -> None:
        self.tty, self.pgid = tty, pgid
        self.handed = False  # the hook's group holds the terminal's foreground
        self.stopped = False  # the hook's stop was seen and the run stopped for it

    def resume(self) -> None:
        """The foreground to the hook if the run has it; the hook goes on (one that read
        the terminal before it was handed was stopped by SIGTTIN, as before a shell's
        `fg`)."""
        if self.tty is not None and _holds(self.tty):
            _set_foreground(self.tty, self.pgid)
            self.handed = True
        _signal_group(self.pgid, signal.SIGCONT)
        self.stopped = False

    def follow(self) -> None:
        """One look at the hook: stopped, the run takes its terminal back and stops too;
        once the run holds the foreground again (`fg`), the hook gets it and goes on."""
        if self.tty is None:
            return
        if not self.stopped:
            signum = _stop_signal(self.pgid)
            if signum is None:
                return
            self.stopped = True
            self.give_back()
            # The run's whole job, as the terminal would have stopped it. A group with
            # no shell above it (orphaned) is not stopped: it goes on at once.
            _signal_group(os.getpgrp(), signum)
        if _holds(self.tty):
            self.resume()

    def give_back(self) -> bool:
        """The foreground back to the run if the hook holds it; whether it did. Not if
        the shell took it meanwhile (the run stopped, then sent on with `bg`): taken from
        the shell, it would leave the user's shell without its terminal."""
        handed, self.handed = self.handed, False
        if handed and self.tty is not None and _held_by(self.tty, self.pgid):
            _set_foreground(self.tty, os.getpgrp())
        return handed


def _holds(tty: int) -> bool:
    """Does this process's group hold the terminal's foreground?"""
    return _held_by(tty, os.getpgrp())


def _held_by(tty: int, pgid: int) -> bool:
    try:
        return os.tcgetpgrp(tty) == pgid
    except OSError:
        return False


def _stop_signal(pid: int) -> int | None:
    """The signal that stopped child `pid` since the last look, if one did (mirrored as
    SIGTSTP unless a terminal read or write stopped it). Exits are left to asyncio:
    WSTOPPED alone reaps nothing."""
    try:
        info = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG)
    except ChildProcessError:  # already reaped
        return None
    if info is None or info.si_code != os.CLD_STOPPED:
        return None
    return info.si_status if info.si_status in _TERMINAL_STOPS else signal.SIGTSTP


_TERMINAL_STOPS = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})


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
    # A stopped group (Ctrl-Z, a read from the background) takes SIGTERM only once
    # continued, as a shell's `kill` does: else it would get SIGKILL, not its cleanup.
    _signal_group(proc.pid, signal.SIGCONT)
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

"""Hooks run in a process group of their own, yet on the run's terminal as certbot's do:
a hook that asks there (sudo's password, ssh's passphrase) gets its answer instead of
being stopped as a background job, and Ctrl-C there ends the run too."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import subprocess
import sys
import termios
from collections.abc import Iterator

import pytest

from acmekit_testkit.waits import until

# The run: a hook that reads the terminal, then what it got or that the run was stopped.
HOOK = "printf 'asking\\n' >/dev/tty; read answer </dev/tty; echo got=$answer"
RUN = f"""
import asyncio
from acmekit.hookprocs import run_shell
try:
    code, out, err = asyncio.run(run_shell({HOOK!r}))
    print("hook", code, out.decode().strip(), flush=True)
except KeyboardInterrupt:
    print("run interrupted", flush=True)
"""


def _take_terminal() -> None:
    # A session of its own (start_new_session) whose controlling terminal is the pty.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


# Two hooks asked at once (a DNS hook for each of two names), each reading the terminal.
TWO = """
import asyncio
from acmekit.hookprocs import run_shell
HOOK = "printf 'asking %s\\\\n' $N >/dev/tty; read answer </dev/tty; echo got=$answer"
async def both():
    return await asyncio.gather(*(run_shell(HOOK, {"N": n}) for n in ("1", "2")))
print("hooks", *(out.decode().strip() for _, out, _ in asyncio.run(both())), flush=True)
"""


class Terminal:
    def __init__(self, run: str = RUN) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", run],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        os.set_blocking(self.master, False)
        self.seen = b""

    def shown(self, text: bytes) -> bool:
        with contextlib.suppress(OSError):  # nothing yet, or the run has closed it
            self.seen += os.read(self.master, 4096)
        return text in self.seen

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    yield term
    term.close()


async def test_a_hook_reads_the_terminal_of_the_run(terminal: Terminal) -> None:
    await until(lambda: terminal.shown(b"asking"))
    os.write(terminal.master, b"yes\n")
    await until(lambda: terminal.shown(b"hook 0 got=yes"))


async def test_ctrl_c_during_a_hook_ends_the_run(terminal: Terminal) -> None:
    await until(lambda: terminal.shown(b"asking"))
    # The hook's group holds the terminal: the key reaches the hook alone.
    await until(lambda: os.tcgetpgrp(terminal.master) != terminal.proc.pid)
    os.write(terminal.master, b"\x03")  # the terminal's VINTR: SIGINT to its foreground
    await until(lambda: terminal.shown(b"run interrupted"))


async def test_hooks_asked_at_once_take_the_terminal_in_turn() -> None:
    """Run at once, the second hook would take the terminal's foreground from the first
    and, ending first or last, leave the other in the background, stopped for ever at
    its read: they run one after the other, each answered."""
    term = Terminal(TWO)
    try:
        await until(lambda: term.shown(b"asking 1"))
        os.write(term.master, b"one\n")
        await until(lambda: term.shown(b"asking 2"))
        os.write(term.master, b"two\n")
        await until(lambda: term.shown(b"hooks got=one got=two"))
    finally:
        term.close()

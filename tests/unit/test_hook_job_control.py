"""A hook stopped on the terminal (Ctrl-Z, or a read there from the background) stops
the run with it, as a shell's job stops: the user's shell then has its terminal back,
and `fg` goes on with both, the hook getting the terminal again."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.hookprocs import stop_group
from acmekit_testkit.waits import until

HOOK = "printf 'asking\\n' >/dev/tty; read answer </dev/tty; echo got=$answer"
RUN = f"""
import asyncio, os
from acmekit.hookprocs import run_shell
print("run", os.getpid(), flush=True)
code, out, err = asyncio.run(run_shell({HOOK!r}))
print("hook", code, out.decode().strip(), flush=True)
"""


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Shell:
    """An interactive shell with job control on a terminal of its own."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        env = {"PATH": os.environ["PATH"], "PS1": "$ ", "TERM": "dumb", "HOME": "/"}
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "-i"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        os.set_blocking(self.master, False)
        self.seen = b""

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def shown(self, text: bytes) -> bool:
        with contextlib.suppress(OSError):
            self.seen += os.read(self.master, 65536)
        return text in self.seen

    def foreground(self) -> int:
        return os.tcgetpgrp(self.master)

    def close(self) -> None:
        # The shell's session: it, the run and the hook, whatever state they are left in.
        session = [pid for pid in _pids() if _session(pid) == self.proc.pid]
        for pid in session:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        os.close(self.master)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


@pytest.fixture
def shell() -> Iterator[Shell]:
    term = Shell()
    yield term
    term.close()


def _run_pid(shell: Shell) -> int:
    text = shell.seen.split(b"run ", 1)[1]
    return int(text.split()[0])


async def _start(shell: Shell, tmp_path: Path, command: str) -> int:
    script = tmp_path / "run.py"
    script.write_text(RUN)
    env = f"PYTHONPATH={os.pathsep.join(sys.path)}"
    shell.type(f"{env} {sys.executable} {script} {command}\n".encode())
    await until(lambda: shell.shown(b"asking"))
    return _run_pid(shell)


async def test_ctrl_z_during_a_hook_stops_the_run_and_fg_goes_on(
    shell: Shell, tmp_path: Path
) -> None:
    await until(lambda: shell.shown(b"$ "))
    run = await _start(shell, tmp_path, "")
    # The hook's group holds the terminal: the key reaches the hook alone.
    await until(lambda: shell.foreground() not in (shell.proc.pid, run))
    shell.type(b"\x1a")  # the terminal's VSUSP: SIGTSTP to its foreground
    await until(lambda: shell.shown(b"Stopped"))  # the shell has its terminal back
    assert shell.foreground() == shell.proc.pid
    shell.type(b"fg\n")
    await until(lambda: shell.foreground() not in (shell.proc.pid, run))
    shell.type(b"yes\n")
    await until(lambda: shell.shown(b"hook 0 got=yes"))


async def test_a_hook_read_from_a_background_run_stops_it_until_fg(
    shell: Shell, tmp_path: Path
) -> None:
    await until(lambda: shell.shown(b"$ "))
    shell.type(b"set -b\n")  # a background job's stop reported at once, not at a prompt
    await _start(shell, tmp_path, "&")
    await until(lambda: shell.shown(b"Stopped"))  # the hook's read stops the job
    shell.type(b"fg\n")
    await until(lambda: shell.foreground() != shell.proc.pid)
    await until(lambda: shell.shown(b"fg\r\n") and _hook_has_terminal(shell))
    shell.type(b"yes\n")
    await until(lambda: shell.shown(b"hook 0 got=yes"))


def _hook_has_terminal(shell: Shell) -> bool:
    return shell.foreground() not in (shell.proc.pid, _run_pid(shell))


# A hook that waits for its go, then a run that lives on after it until its own go.
WAITING = """
import asyncio, os, sys, time
from pathlib import Path
from acmekit.hookprocs import run_shell
here = Path(sys.argv[1])
print("run", os.getpid(), flush=True)
hook = f"echo asking; while [ ! -e {here}/hook ]; do sleep 0.05; done"
code, out, err = asyncio.run(run_shell(hook))
print("hook", code, flush=True)
while not (here / "run").exists():
    time.sleep(0.05)
"""


async def _start_waiting(shell: Shell, tmp_path: Path) -> int:
    await until(lambda: shell.shown(b"$ "))
    script = tmp_path / "run.py"
    script.write_text(WAITING)
    env = f"PYTHONPATH={os.pathsep.join(sys.path)}"
    shell.type(f"{env} {sys.executable} {script} {tmp_path}\n".encode())
    await until(lambda: shell.shown(b"run "))
    run = _run_pid(shell)
    await until(lambda: shell.foreground() not in (shell.proc.pid, run))
    return run


async def test_the_run_has_the_terminal_again_once_its_hook_ends(
    shell: Shell, tmp_path: Path
) -> None:
    run = await _start_waiting(shell, tmp_path)
    (tmp_path / "hook").touch()
    await until(lambda: shell.shown(b"hook 0"))
    assert shell.foreground() == run
    (tmp_path / "run").touch()
    await until(lambda: shell.foreground() == shell.proc.pid)


async def test_a_run_sent_to_the_background_leaves_the_terminal_to_the_shell(
    shell: Shell, tmp_path: Path
) -> None:
    """Stopped and then continued with `bg` while its hook held the terminal, the run
    no longer had the foreground when the hook ended: it takes nothing from the shell,
    which would else be left without its terminal."""
    run = await _start_waiting(shell, tmp_path)
    os.kill(run, signal.SIGSTOP)  # as the terminal would stop it (tostop, a read)
    await until(lambda: shell.shown(b"Stopped"))
    shell.type(b"bg\n")
    await until(lambda: shell.shown(b"bg\r\n") and shell.foreground() == shell.proc.pid)
    (tmp_path / "hook").touch()
    await until(lambda: shell.shown(b"hook 0"))
    assert shell.foreground() == shell.proc.pid
    (tmp_path / "run").touch()


async def test_a_stopped_hook_cancelled_gets_its_sigterm(tmp_path: Path) -> None:
    """A hook stopped (Ctrl-Z, a background read) when the run is cancelled is continued
    after SIGTERM, as a shell's `kill` does, so that it ends by its own cleanup rather
    than by SIGKILL when the grace has passed."""
    done = tmp_path / "cleaned"
    proc = await asyncio.create_subprocess_shell(
        f"trap 'touch {done}; exit 0' TERM; kill -STOP $$; sleep 30",
        process_group=0,
    )
    await until(lambda: _stopped(proc.pid))
    await stop_group(proc, grace=5.0)
    assert done.exists()


def _stopped(pid: int) -> bool:
    info = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT)
    return info is not None and info.si_code == os.CLD_STOPPED

"""The example commands of the README and docs/*.md, read from the documents themselves.

A fenced block whose info string is `sh example` (GitHub renders it as `sh`) holds
commands a user types as written, in the repository's directory: one per line, `\\`
continues a line, `#` starts a comment, and a line ending in `&` starts a program that
keeps running (a server) while the next lines run. A comment `# prints: TEXT` says what
the command's output contains; `# within a minute, prints: TEXT` that it will, once the
servers started above have done their work. A line `$ acmekit ...` in any fenced block
is a transcript: its command is checked too.

Tests run the blocks with their ports moved (`move_ports`) and `make run` replaced by the
command it runs, so that the documents cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from acmekit_testkit.processes import log_tail

REPO = Path(__file__).resolve().parents[2]
ACMEKIT = str(Path(sys.executable).with_name("acmekit"))
_FENCE = re.compile(r"^```(.*)$")
_EXPECT = re.compile(r"^\s*(within a minute, )?prints: (.*?)\s*$")
# What a server that `&` started prints once it serves (the CA, the fleet, DNS).
BANNERS = ("directory: ", "api: ", "dns: ")


@dataclass(frozen=True)
class Example:
    document: Path
    line: int  # where the command starts, 1-based
    command: str  # continuation lines joined, comment removed
    expect: str | None = None  # text its output contains
    eventually: bool = False  # ... once the servers have done their work

    @property
    def background(self) -> bool:
        return self.command.endswith("&")

    def argv(self) -> list[str]:
        return shlex.split(self.command.removesuffix("&"))

    def __str__(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}: {self.command}"


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def example_blocks(document: Path) -> Iterator[list[Example]]:
    """Each `sh example` block of `document`, as its commands."""
    block: list[Example] | None = None
    pending = ""
    start = 0
    for number, line in enumerate(document.read_text().splitlines(), 1):
        fence = _FENCE.match(line)
        if fence is not None:
            if block is not None:
                yield block
                block = None
            elif fence[1].split() == ["sh", "example"]:
                block = []
            continue
        if block is None:
            continue
        text = line.rstrip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        command, comment = _split_comment(pending + text)
        pending = ""
        if command.strip():
            expect = _EXPECT.match(comment or "")
            block.append(
                Example(
                    document,
                    start,
                    " ".join(command.split()),
                    expect[2] if expect else None,
                    bool(expect and expect[1]),
                )
            )


def examples(document: Path | None = None) -> list[Example]:
    docs = [document] if document is not None else documents()
    return [ex for doc in docs for block in example_blocks(doc) for ex in block]


def fenced(document: Path, info: str) -> list[tuple[int, str]]:
    """The fenced blocks of `document` whose info string is `info`: (first line, text)."""
    found: list[tuple[int, str]] = []
    lines: list[str] | None = None  # the block's lines, while in a block of `info`
    inside = False
    start = 0
    for number, line in enumerate(document.read_text().splitlines(), 1):
        fence = _FENCE.match(line)
        if fence is None:
            if lines is not None:
                lines.append(line)
            continue
        if inside and lines is not None:
            found.append((start, "\n".join(lines) + "\n"))
        lines = [] if not inside and fence[1].strip() == info else None
        inside, start = not inside, number + 1
    return found


def transcripts(document: Path | None = None) -> list[Example]:
    """`$ acmekit ...` lines of any plain fenced block, each with the output shown after
    it (up to the next `$` line) as `expect`, one line per line."""
    found = []
    for doc in [document] if document is not None else documents():
        for start, text in fenced(doc, ""):
            lines = text.splitlines()
            for i, line in enumerate(lines):
                if line.startswith("$ acmekit "):
                    command, _ = _split_comment(line.removeprefix("$ "))
                    shown = []
                    for after in lines[i + 1 :]:
                        if after.startswith("$ "):
                            break
                        shown.append(after)
                    expect = "\n".join(shown) if shown else None
                    found.append(Example(doc, start + i, command.strip(), expect))
    return found


def _split_comment(line: str) -> tuple[str, str | None]:
    """The line and its `#` comment (a `#` inside quotes or a word is no comment)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1 :]
    return line, None


def move_ports(command: str, moves: Mapping[str, str]) -> str:
    """`command` with each key of `moves` (an address or a flag with its port, such as
    `127.0.0.1:14000` or `--http-01-port 5002`) replaced by its value."""
    for old, new in moves.items():
        command = command.replace(old, new)
    return command


def make_run_command(variables: Mapping[str, str]) -> str:
    """What `make run VAR=VALUE...` runs (`make -n`, the virtualenv taken as set up)."""
    shown = subprocess.run(
        ["make", "-s", "-n", "-o", ".venv/.installed", "run",
         *(f"{k}={v}" for k, v in variables.items())],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    # A recipe continued with backslashes is printed as written: one command, joined.
    (line,) = shown.stdout.strip().replace("\\\n", " ").splitlines()
    return " ".join(line.split())


def as_run_here(command: str, make_run: Mapping[str, str]) -> str:
    """`command` as a test runs it: `make run` as what it runs (with `make_run`'s
    variables), this virtualenv's acmekit for `.venv/bin/acmekit`."""
    if command.removesuffix("&").strip() == "make run":
        command = make_run_command(make_run) + (" &" if command.endswith("&") else "")
    # `.venv/bin/acmekit` as written in the docs, not inside an absolute path make printed.
    return re.sub(r"(?<![\w/.])\.venv/bin/acmekit", ACMEKIT, command)


def _env() -> dict[str, str]:
    """This environment with this virtualenv's programs first on PATH, as after
    `pip install` (the docs say `acmekit`, or `.venv/bin/acmekit` in the repository)."""
    path = os.pathsep.join([str(Path(ACMEKIT).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path}


@contextmanager
def _background(command: str, cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`command` in its own session, until the block ends; stopped by its process group,
    which holds only what it started."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", command.removesuffix("&")], cwd=cwd, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**_env(), "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _wait_banner(proc: subprocess.Popen[bytes], log: Path, what: str, command: str) -> None:
    """Until the program's banner is out: for the CA (`make run` is one, with its own DNS
    server and CT logs, which print theirs first) the directory's line."""
    banners = ("directory: ",) if "acmekit server" in command else BANNERS
    deadline = time.monotonic() + 60
    while not any(line.startswith(banners) for line in log_tail(log, 100_000).splitlines()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start:\n{log_tail(log)}")
        time.sleep(0.1)


def run_block(
    block: Sequence[Example],
    cwd: Path,
    moves: Mapping[str, str],
    make_run: Mapping[str, str],
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Run a block's commands in `cwd` as a user would, ports moved; each foreground
    command must succeed and print what its comment says. Their outputs, in order."""
    outputs = []
    with ExitStack() as stack:
        for number, example in enumerate(block):
            command = as_run_here(move_ports(example.command, moves), make_run)
            if example.background:
                log = cwd / f"example-{number}.log"
                proc = stack.enter_context(_background(command, cwd, log))
                _wait_banner(proc, log, str(example), command)
                continue
            outputs.append(_run_one(example, command, cwd, env))
    return outputs


def _run_one(example: Example, command: str, cwd: Path, env: Mapping[str, str] | None) -> str:
    deadline = time.monotonic() + (60 if example.eventually else 0)
    while True:
        done = subprocess.run(
            ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=180,
            env={**_env(), **(env or {})},
        )  # fmt: skip
        output = done.stdout + done.stderr
        ok = done.returncode == 0 and (example.expect is None or example.expect in output)
        if ok:
            return output
        if time.monotonic() >= deadline:
            raise AssertionError(f"{example}\nexit {done.returncode}:\n{output[-3000:]}")
        time.sleep(0.5)


@dataclass(frozen=True)
class MakeRun:
    """`make run`'s variables for a run on free ports: the CA at `ca`, validating
    http-01 on `http01`; the rest (DNS, its API, tls-alpn-01, CRLs) moved out of the way."""

    state: Path
    ca: int
    http01: int

    @classmethod
    def on_free_ports(cls, state: Path) -> MakeRun:
        from acmekit_testkit.ports import free_port

        ca = free_port()
        while (http01 := free_port()) == ca:
            pass
        return cls(state, ca, http01)

    def variables(self) -> dict[str, str]:
        from acmekit_testkit.ports import free_port, free_tcp_udp_port

        # A port found free is not held, and the kernel may offer it again: every port
        # here must differ from the others, the CA's and http-01's included.
        taken = {self.ca, self.http01}

        def fresh(pick: Callable[[], int] = free_port) -> int:
            while (port := pick()) in taken:
                pass
            taken.add(port)
            return port

        return {
            "STATE": str(self.state),
            "RUN_LISTEN": f"127.0.0.1:{self.ca}",
            "RUN_CT_PORT": str(fresh()),
            "RUN_CT_PORT2": str(fresh()),
            "RUN_FLAGS": (
                f"--demo-dns 127.0.0.1:{fresh(free_tcp_udp_port)} "
                f"--demo-dns-api 127.0.0.1:{fresh()} --http01-port {self.http01} "
                f"--tlsalpn01-port {fresh()} --crl-listen 127.0.0.1:{fresh()}"
            ),
        }

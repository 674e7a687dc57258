"""The example commands of the README and docs/*.md, read from the documents themselves.

A fenced block whose info string is `sh example` (GitHub renders it as `sh`) holds
commands a user types as written: one per line, `\\` continues a line, `#` starts a
comment. Tests run them with their ports moved (`move_ports`), so the documents cannot
drift from the code.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```(.*)$")


@dataclass(frozen=True)
class Example:
    document: Path
    line: int  # where the command starts, 1-based
    command: str  # continuation lines joined, comment removed

    def argv(self) -> list[str]:
        return shlex.split(self.command)

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
        command = _uncomment(pending + text).strip()
        pending = ""
        if command:
            block.append(Example(document, start, " ".join(command.split())))


def examples(document: Path | None = None) -> list[Example]:
    docs = [document] if document is not None else documents()
    return [ex for doc in docs for block in example_blocks(doc) for ex in block]


def _uncomment(line: str) -> str:
    """The line without its `#` comment (a `#` inside quotes or a word stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def move_ports(command: str, moves: Mapping[str, str]) -> str:
    """`command` with each key of `moves` (an address or a flag with its port, such as
    `127.0.0.1:14000` or `--http-01-port 5002`) replaced by its value."""
    for old, new in moves.items():
        command = command.replace(old, new)
    return command

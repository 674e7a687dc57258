"""Edits of nginx configuration files as splices, written under a checkpoint.

`Changes` gathers splices per file and whole new files; `write` saves each file in the
checkpoint first, then writes it. Every line we add ends with `# managed by acmekit`,
as certbot marks its own.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from acmekit.certbot.nginx.backup import Checkpoint
from acmekit.certbot.nginx.parser import Directive, Splice, apply_splices
from acmekit.files import atomic_write

MARK = "# managed by acmekit"


def _line_start(text: str, offset: int) -> int | None:
    """The start of `offset`'s line if only white space is before it there."""
    begin = text.rfind("\n", 0, offset) + 1
    return begin if text[begin:offset].strip() == "" else None


def append_to_block(block: Directive, lines: list[str]) -> Splice:
    """Add `lines` (each one directive or block, one line each) as the last entries of
    `block`, indented as its other entries."""
    text = block.file.text
    indent = block.body_indent()
    body = "".join(f"{indent}{line}\n" for line in lines)
    begin = _line_start(text, block.body_end)
    path = block.file.path
    if begin is not None and begin > block.body_start:
        # `}` on its own line: the new lines go before that line.
        return Splice(path, begin, begin, body)
    # `server { listen 80; }` on one line: a new line opens before the `}`.
    return Splice(path, block.body_end, block.body_end, "\n" + body + block.indent())


def prepend_to_block(block: Directive, lines: list[str]) -> Splice:
    """Add `lines` as the first entries of `block`, each on a line of its own."""
    indent = block.body_indent()
    body = "".join(f"\n{indent}{line}" for line in lines)
    text = block.file.text
    if not text[block.body_start :].startswith(("\n", "\r\n")):
        body += "\n" + indent  # `server { listen 80; }`: what followed `{` gets its own line
    return Splice(block.file.path, block.body_start, block.body_start, body)


def replace_directive(directive: Directive, new: str) -> Splice:
    """`new` (one directive, or "" to remove it) where `directive` was; marked as ours
    only when nothing follows on its line, since the mark is a comment to the line end."""
    text = directive.file.text
    line_end = text.find("\n", directive.end)
    rest = text[directive.end : len(text) if line_end < 0 else line_end]
    if new and rest.strip() == "":
        new = f"{new} {MARK}"
    return Splice(directive.file.path, directive.start, directive.end, new)


class Changes:
    def __init__(self) -> None:
        self.splices: dict[Path, list[Splice]] = defaultdict(list)
        self.texts: dict[Path, str] = {}  # file -> its text before the splices
        self.new_files: dict[Path, str] = {}

    def add(self, splice: Splice, original_text: str) -> None:
        self.splices[splice.path].append(splice)
        self.texts.setdefault(splice.path, original_text)

    def splice(self, directive: Directive, splice: Splice) -> None:
        self.add(splice, directive.file.text)

    def create(self, path: Path, text: str) -> None:
        self.new_files[path] = text

    def __bool__(self) -> bool:
        return bool(self.splices or self.new_files)

    def rendered(self) -> dict[Path, str]:
        """Each changed file's new text."""
        out = {p: apply_splices(self.texts[p], s) for p, s in self.splices.items()}
        out.update(self.new_files)
        return out

    def write(self, checkpoint: Checkpoint) -> list[Path]:
        rendered = self.rendered()
        for path in rendered:
            checkpoint.save(path)
        for path, text in rendered.items():
            target = path.resolve()
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
            atomic_write(target, text.encode("utf-8", errors="surrogateescape"), mode)
        return list(rendered)

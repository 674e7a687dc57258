"""nginx's configuration language, read as nginx reads it (ngx_conf_file.c).

A file is a list of directives; a directive is words up to `;`, or words and a block
in `{ }`. Words are separated by white space; `"..."` and `'...'` quote (a backslash
escapes the next character), `#` at the start of a word comments out the rest of the
line, and `${name}` inside a word is a variable, not a block. Every directive keeps
where it starts and ends in its file, so an edit is a splice of the source: whatever is
not edited (comments, blank lines, indentation) is kept byte for byte.

`include` is followed as nginx does: a relative pattern is taken from the directory of
the main configuration file (nginx's conf prefix), a pattern with `*?[` is a glob whose
matches are read in sorted order, and a plain path that does not exist is an error.
"""

from __future__ import annotations

import glob
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class NginxParseError(ValueError):
    """The configuration cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Token:
    value: str
    start: int
    end: int
    quoted: bool = False


_SPECIAL = {";", "{", "}"}


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def tokenize(text: str, where: str = "<text>") -> Iterator[Token]:
    """The words and `;{}` of `text`, comments and white space left out."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif c in _SPECIAL:
            yield Token(c, i, i + 1)
            i += 1
        elif c in "\"'":
            value, end = _quoted(text, i, where)
            yield Token(value, i, end, quoted=True)
            i = end
        else:
            value, end = _word(text, i)
            yield Token(value, i, end)
            i = end


_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", '"': '"', "'": "'", "\\": "\\"}


def _unescape(text: str, i: int) -> tuple[str, int]:
    """nginx's escapes after a backslash at `i`; any other one stays as written."""
    nxt = text[i + 1] if i + 1 < len(text) else ""
    if nxt in _ESCAPES and nxt:
        return _ESCAPES[nxt], i + 2
    return "\\" + nxt, i + 1 + (1 if nxt else 0)


def _quoted(text: str, start: int, where: str) -> tuple[str, int]:
    quote_char, out, i = text[start], [], start + 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            value, i = _unescape(text, i)
            out.append(value)
        elif c == quote_char:
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise NginxParseError(f"{where}:{_line(text, start)}: unterminated quoted string")


def _word(text: str, start: int) -> tuple[str, int]:
    """A bare word: it ends at white space, `;`, or a `{` that does not follow `$`
    (`}` does not end a word in nginx)."""
    out: list[str] = []
    i = start
    while i < len(text):
        c = text[i]
        if c.isspace() or c == ";" or (c == "{" and not (out and out[-1] == "$")):
            break
        if c == "\\":
            value, i = _unescape(text, i)
            out.append(value)
            continue
        out.append(c)
        i += 1
    return "".join(out), i


@dataclass
class Directive:
    """One directive in `file`: `text[start:end]` is all of it (up to and with its `;`
    or its block's `}`); a block's content runs from `body_start` to `body_end` (the
    offset of the `}`)."""

    name: str
    args: list[str]
    file: ConfFile
    start: int
    end: int
    block: list[Directive] | None = None
    body_start: int = -1
    body_end: int = -1
    included: list[ConfFile] = field(default_factory=list)  # what an `include` read

    @property
    def line(self) -> int:
        return _line(self.file.text, self.start)

    @property
    def where(self) -> str:
        return f"{self.file.path}:{self.line}"

    def indent(self) -> str:
        """The white space before this directive on its line."""
        begin = self.file.text.rfind("\n", 0, self.start) + 1
        prefix = self.file.text[begin : self.start]
        return prefix if prefix.strip() == "" else ""

    def body_indent(self) -> str:
        """The indentation of this block's directives (its first one's, or one level in)."""
        for child in self.block or ():
            found = child.indent()
            if found:
                return found
        return self.indent() + "    "


@dataclass
class ConfFile:
    path: Path
    text: str
    directives: list[Directive] = field(default_factory=list)


def parse(text: str, conf_file: ConfFile) -> list[Directive]:
    tokens = list(tokenize(text, str(conf_file.path)))
    directives, _pos = _parse_block(tokens, 0, conf_file, top=True)
    return directives


def _parse_block(
    tokens: list[Token], pos: int, conf_file: ConfFile, *, top: bool
) -> tuple[list[Directive], int]:
    found: list[Directive] = []
    words: list[Token] = []
    where = str(conf_file.path)
    text = conf_file.text
    while pos < len(tokens):
        tok = tokens[pos]
        if tok.quoted or tok.value not in _SPECIAL:
            words.append(tok)
            pos += 1
            continue
        if tok.value == "}":
            if words:
                raise NginxParseError(f"{where}:{_line(text, tok.start)}: unexpected '}}'")
            if top:
                raise NginxParseError(f"{where}:{_line(text, tok.start)}: unexpected '}}'")
            return found, pos
        if not words:
            raise NginxParseError(f"{where}:{_line(text, tok.start)}: unexpected '{tok.value}'")
        name, args = words[0].value, [w.value for w in words[1:]]
        if tok.value == ";":
            found.append(Directive(name, args, conf_file, words[0].start, tok.end))
            pos += 1
        else:
            children, close = _parse_block(tokens, pos + 1, conf_file, top=False)
            if close >= len(tokens):
                raise NginxParseError(
                    f"{where}:{_line(text, tok.start)}: block '{name}' has no closing '}}'"
                )
            end_tok = tokens[close]
            found.append(
                Directive(
                    name,
                    args,
                    conf_file,
                    words[0].start,
                    end_tok.end,
                    children,
                    tok.end,
                    end_tok.start,
                )
            )
            pos = close + 1
        words = []
    if words:
        raise NginxParseError(f"{where}: unexpected end of file after '{words[0].value}'")
    if not top:
        return found, len(tokens)
    return found, pos


@dataclass
class NginxConfig:
    """The main file and every file it includes, by path."""

    main: ConfFile
    files: dict[Path, ConfFile]

    @property
    def prefix(self) -> Path:
        return self.main.path.parent

    @classmethod
    def load(cls, main: Path) -> NginxConfig:
        main = main.absolute()
        config = cls(ConfFile(main, ""), {})
        config.main = config._read(main)
        return config

    def _read(self, path: Path, depth: int = 0) -> ConfFile:
        if depth > 20:
            raise NginxParseError(f"{path}: includes nested too deep")
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise NginxParseError(f"cannot read {path}: {exc.strerror}") from exc
        conf_file = ConfFile(path, text)
        self.files[path] = conf_file
        conf_file.directives = parse(text, conf_file)
        for directive in walk(conf_file.directives, follow_includes=False):
            if directive.name == "include" and len(directive.args) == 1:
                for found in self.include_paths(directive.args[0], directive):
                    directive.included.append(self._read(found, depth + 1))
        return conf_file

    def include_paths(self, pattern: str, directive: Directive | None = None) -> list[Path]:
        path = Path(pattern)
        full = path if path.is_absolute() else self.prefix / path
        if re.search(r"[*?\[]", pattern):
            return [Path(p) for p in sorted(glob.glob(str(full)))]
        if not full.exists():
            where = f"{directive.where}: " if directive else ""
            raise NginxParseError(f"{where}included file {full} does not exist")
        return [full]

    def reload(self) -> NginxConfig:
        return NginxConfig.load(self.main.path)


def walk(directives: list[Directive], *, follow_includes: bool = True) -> Iterator[Directive]:
    """Every directive, depth first, through includes when asked."""
    for d in directives:
        yield d
        if d.block is not None:
            yield from walk(d.block, follow_includes=follow_includes)
        if follow_includes:
            for inc in d.included:
                yield from walk(inc.directives, follow_includes=True)


def expand(directives: list[Directive]) -> Iterator[Directive]:
    """The directives of one block level as nginx sees them: an `include` replaced by
    the directives of the files it read."""
    for d in directives:
        if d.name == "include" and d.included:
            for inc in d.included:
                yield from expand(inc.directives)
        else:
            yield d


# -- writing ----------------------------------------------------------------------------

# fullmatch: `$` also matches before a final newline, which was then written bare
_BARE = re.compile(r"[^\s;{}\"'#\\]+")


def quote(word: str) -> str:
    """`word` as nginx reads it back: bare when it can be, in double quotes otherwise."""
    if word and _BARE.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_directive(name: str, args: list[str]) -> str:
    return " ".join([name, *(quote(a) for a in args)]) + ";"


@dataclass(frozen=True)
class Splice:
    """Replace `text[start:end]` of one file with `new` (an insertion when start == end)."""

    path: Path
    start: int
    end: int
    new: str


def apply_splices(text: str, splices: list[Splice]) -> str:
    """`text` with every splice made; they must not overlap."""
    ordered = sorted(splices, key=lambda s: (s.start, s.end))
    for a, b in itertools.pairwise(ordered):
        if b.start < a.end:
            raise ValueError(f"overlapping edits in {a.path} at {a.start} and {b.start}")
    out, last = [], 0
    for s in ordered:
        out.append(text[last : s.start])
        out.append(s.new)
        last = s.end
    out.append(text[last:])
    return "".join(out)

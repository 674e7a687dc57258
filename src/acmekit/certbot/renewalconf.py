"""certbot's renewal configuration files (`renewal/NAME.conf`): the configobj subset.

certbot writes these with configobj: an initial comment block, `key = value` lines,
`[renewalparams]` and inside it `[[webroot_map]]`. Values are strings or lists; a list
is written comma-separated, and a one-element list with a trailing comma
(`webroot_path = /var/www,`). A value is quoted only when configobj would quote it:
when empty, when it has a comma or `#`, or when it starts or ends with white space or
a quote character.

`parse` reads that subset into an ordered `Section` (a dict whose values are str,
list[str] or nested Sections); `render` writes one back in certbot's shape, so a file
certbot made survives a round trip with its keys, order and lists intact. Comments
other than the initial block are not kept (certbot rewrites them the same way).
"""

from __future__ import annotations

from typing import Union

from acmekit.client.errors import ClientError

Value = Union[str, list[str], "Section"]
Section = dict[str, Value]

_WSPACE_PLUS = " \r\n\v\t'\""


class ConfError(ClientError, ValueError):
    """The file is not in the configobj subset certbot writes."""


def _quote(value: str) -> str:
    if not value:
        return '""'
    if "\n" in value:
        raise ConfError("multi-line values are not supported")
    plain = value[0] not in _WSPACE_PLUS and value[-1] not in _WSPACE_PLUS
    if plain and "," not in value and "#" not in value:
        return value
    if "'" in value and '"' in value:
        raise ConfError(f"value has both quote characters: {value!r}")
    return f"'{value}'" if '"' in value else f'"{value}"'


def _render_value(value: str | list[str]) -> str:
    if isinstance(value, str):
        return _quote(value)
    if not value:
        return ","
    if len(value) == 1:
        return _quote(value[0]) + ","
    return ", ".join(_quote(v) for v in value)


def render(doc: Section, initial_comment: tuple[str, ...] = ()) -> str:
    """The file text for `doc`, top-level scalars first, then sections."""
    lines = [f"# {c}" if c else "#" for c in initial_comment]
    _render_section(doc, 0, lines)
    return "\n".join(lines) + "\n"


def _render_section(doc: Section, depth: int, lines: list[str]) -> None:
    for key, value in doc.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_render_value(value)}")
    for key, value in doc.items():
        if isinstance(value, dict):
            if depth == 0:
                lines.extend(["", "# Options used in the renewal process"])
            brackets = depth + 1
            lines.append(f"{'[' * brackets}{key}{']' * brackets}")
            _render_section(value, depth + 1, lines)


def _split_values(text: str) -> tuple[list[str], bool]:
    """Values on the right of `=`: the strings and whether it was written as a list."""
    items: list[str] = []
    current = ""
    quote: str | None = None
    quoted = False
    is_list = False
    for ch in text:
        if quote is not None:
            if ch == quote:
                quote = None
            else:
                current += ch
        elif ch in "'\"" and not current.strip():
            quote, quoted, current = ch, True, ""
        elif ch == "#":
            break
        elif ch == ",":
            is_list = True
            items.append(current if quoted else current.strip())
            current, quoted = "", False
        else:
            current += ch
    if quote is not None:
        raise ConfError(f"unterminated quote in {text!r}")
    last = current if quoted else current.strip()
    if last or quoted or not is_list:
        items.append(last)
    return items, is_list


def parse(text: str) -> Section:
    """Parse a renewal conf; keys keep their order."""
    root: Section = {}
    stack: list[Section] = [root]
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            depth = len(line) - len(line.lstrip("["))
            name = line.strip("[]").strip()
            if depth > len(stack) or not name:
                raise ConfError(f"line {number}: bad section header")
            del stack[depth:]
            child: Section = {}
            stack[-1][name] = child
            stack.append(child)
            continue
        if "=" not in line:
            raise ConfError(f"line {number}: expected key = value")
        key, rest = line.split("=", 1)
        values, is_list = _split_values(rest.strip())
        stack[-1][key.strip()] = values if is_list else values[0]
    return root


def initial_comment(text: str) -> tuple[str, ...]:
    """The comment lines at the top of the file, without their `# `."""
    found: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("#"):
            break
        found.append(line[1:].strip())
    return tuple(found)


def get_str(doc: Section, key: str) -> str | None:
    """A scalar value (the first item when it was written as a list)."""
    value = doc.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        return value[0]
    return None


def get_list(doc: Section, key: str) -> list[str]:
    value = doc.get(key)
    if isinstance(value, list):
        return list(value)
    return [value] if isinstance(value, str) and value else []


def get_section(doc: Section, key: str) -> Section:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}

"""JSON from the network, with a bound on nesting.

`json.loads` recurses once per level of `[` or `{`, so a body of a few kilobytes of
brackets ends in RecursionError (not a ValueError) and, uncaught, in a 500. No message
of ACME or of the DNS API nests deeper than a handful of levels, so anything deeper
than MAX_DEPTH is refused as malformed before or after parsing.

Cost on the hot path: a body with no more than MAX_DEPTH brackets in all cannot nest
deeper than that, and counting them is two `bytes.count` calls; only a body with more
brackets has its parsed value walked once to measure its depth.

Both ways call the standard library's C scanner and encoder directly: `json.loads` and
`json.dumps` reach them through three Python frames each (and `dumps` builds a new
encoder object per call), a few microseconds on every request for nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from acmekit.protocol.problems import malformed

MAX_DEPTH = 32
# A \u escape of a UTF-16 surrogate: the only way a lone one gets into a parsed string,
# the text itself being UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
# What JSONDecoder.decode skips around the value (RFC 8259 §2: insignificant whitespace).
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_WHITESPACE_CHARS = " \t\n\r"
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# json.dumps's defaults (ASCII-only, ", " and ": "), without its circular-reference
# bookkeeping: every document dumped here is a fresh tree of dicts, lists and scalars.
_ENCODE = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None,
    json.JSONEncoder().default,
    json.encoder.encode_basestring_ascii,
    None,
    ": ",
    ", ",
    False,
    False,
    True,
)


def dumps(doc: Any) -> bytes:
    """`json.dumps(doc).encode()` for an object or array, the same bytes."""
    return "".join(_ENCODE(doc, 0)).encode("ascii")


def _parse(text: str) -> Any:
    """`json.loads(text)`: one JSON value with optional whitespace around it; ValueError
    otherwise (a leading byte-order mark included, as `json.loads` refuses one)."""
    if text.startswith("\ufeff"):
        raise ValueError("JSON text starts with a byte-order mark")
    try:
        value, end = _SCAN(text, _skip(text, 0))
    except StopIteration as exc:
        raise ValueError(f"no JSON value at {exc.value}") from None
    if _skip(text, end) != len(text):
        raise ValueError("extra data after the JSON value")
    return value


def _skip(text: str, at: int) -> int:
    # Most texts have no whitespace around the value: one character tells, without a
    # call into the regular expression engine.
    if at == len(text) or text[at] not in _WHITESPACE_CHARS:
        return at
    space = _WHITESPACE.match(text, at)
    return space.end() if space else at


def loads(text: bytes | str, what: str = "request body") -> Any:
    """Parse `text` as JSON; malformed (naming `what`) if invalid or nested too deep.

    Bytes must be UTF-8 (RFC 8259 §8.1; RFC 7515 §5.2 reads the protected header as
    UTF-8): `json.loads` would also take UTF-16 and UTF-32, which another reader of the
    same bytes (a proxy, a log, an audit) would not see as this JSON."""
    try:
        value = _parse(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise malformed(f"{what} is not valid JSON") from exc
    except RecursionError:
        raise malformed(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    if _brackets(text) > MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise malformed(f"{what} is nested deeper than {MAX_DEPTH} levels")
    if _has_surrogate_escape(text) and _lone_surrogate(value):
        # RFC 8259 §8.2 leaves such strings' meaning open and RFC 7493 §2.1 forbids
        # them; Python keeps them, and the database driver cannot encode them (a 500
        # on a kid or an EAB kid holding one).
        raise malformed(f"{what} has a string with an unpaired UTF-16 surrogate")
    return value


def _brackets(text: bytes | str) -> int:
    # Counted, not found one by one up to the bound: a loop of `find` calls cost more
    # than the two counts on all but the largest bodies (docs/decisions.md).
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def _has_surrogate_escape(text: bytes | str) -> bool:
    """Whether `text` has a \\u escape of a surrogate. Most bodies have no backslash at
    all (base64url and plain names): a one-character search (memchr) tells, in a quarter
    of the time a search for the two characters of "\\u" took (0.23 µs against 0.89 µs
    on a JWS body of 850 bytes). For bytes it is `find`: `in` first tries its operand as
    an integer, and the TypeError it raises and clears costs several times the search."""
    if isinstance(text, bytes):
        return text.find(b"\\") != -1 and _SURROGATE_ESCAPE_BYTES.search(text) is not None
    return "\\" in text and _SURROGATE_ESCAPE.search(text) is not None


def _lone_surrogate(value: Any) -> bool:
    """Whether any string in `value` (object keys included) is not valid Unicode text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (a scalar is 0), without recursion:
    level by level, each level's children in one list. Any request body comes here before
    its signature or nonce is checked: with a walk of (node, level) tuples by a generator,
    a 63 KB JWS body of 21,000 empty arrays took 191.7 million instructions to parse
    (`parse_jws`), 36.5 million with this one."""
    deepest = 0
    level: list[Any] = [value]
    while True:
        below: list[Any] = []
        found = False
        for item in level:
            if isinstance(item, dict):
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
            else:
                continue
            found = True
        if not found:
            return deepest
        deepest += 1
        level = below

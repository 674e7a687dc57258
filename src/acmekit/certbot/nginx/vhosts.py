"""Server blocks, and which one nginx picks for a name on a port.

nginx's rules (https://nginx.org/en/docs/http/server_names.html and
request_processing.html): among the server blocks listening on the port, the first
that has the name exactly; then the longest wildcard that starts with `*` (or
`.example.org`, which is both `example.org` and `*.example.org`); then the longest
wildcard that ends with `*`; then the first regular expression (`~`) in the order of
the configuration; and when none matches, the port's default server: the one marked
`default_server`, or else the first block listening on the port. Names compare without
regard to case. A block without `listen` listens on port 80 (as root).

Where several addresses share a port (`127.0.0.1:80` and `*:80`), nginx picks among the
blocks of the address a connection came to; we consider every block on the port.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from acmekit.certbot.nginx.parser import Directive, NginxConfig, expand

DEFAULT_PORT = 80


@dataclass(frozen=True)
class Listen:
    address: str  # "*" for every address, "[::]", "127.0.0.1", a name
    port: int
    ssl: bool
    default_server: bool
    directive: Directive | None  # None: the implied `listen 80`

    @property
    def host_part(self) -> str:
        """What to write before `:PORT` in a new listen on the same address."""
        return "" if self.address == "*" else f"{self.address}:"


def parse_listen(directive: Directive) -> Listen | None:
    """`listen ADDRESS[:PORT] [ssl] [default_server]...`; None for a unix socket."""
    if not directive.args:
        return None
    where = directive.args[0]
    if where.startswith("unix:"):
        return None
    flags = set(directive.args[1:])
    default = bool(flags & {"default_server", "default"})
    ssl = "ssl" in flags
    if where.isdigit():
        return Listen("*", int(where), ssl, default, directive)
    if where.startswith("["):
        host, _, rest = where.partition("]")
        port = rest.removeprefix(":")
        return Listen(host + "]", int(port) if port else DEFAULT_PORT, ssl, default, directive)
    host, sep, port = where.rpartition(":")
    if not sep:
        return Listen(where, DEFAULT_PORT, ssl, default, directive)
    return Listen(host or "*", int(port), ssl, default, directive)


@dataclass(frozen=True)
class ServerBlock:
    directive: Directive
    names: tuple[str, ...]
    listens: tuple[Listen, ...]
    ssl_on: bool  # the old `ssl on;`: every listen is TLS

    def on_port(self, port: int) -> list[Listen]:
        return [lis for lis in self.listens if lis.port == port]

    def is_ssl_on(self, port: int) -> bool:
        return any(lis.ssl or self.ssl_on for lis in self.on_port(port))

    def directives(self) -> list[Directive]:
        """The block's own directives, includes expanded."""
        return list(expand(self.directive.block or []))

    def find(self, name: str) -> list[Directive]:
        return [d for d in self.directives() if d.name == name]


def server_blocks(config: NginxConfig) -> list[ServerBlock]:
    """Every `server` of every `http` block, in configuration order."""
    found: list[ServerBlock] = []
    for top in expand(config.main.directives):
        if top.name != "http" or top.block is None:
            continue
        for d in expand(top.block):
            if d.name == "server" and d.block is not None:
                found.append(_server(d))
    return found


def http_blocks(config: NginxConfig) -> list[Directive]:
    return [d for d in expand(config.main.directives) if d.name == "http" and d.block is not None]


def _server(directive: Directive) -> ServerBlock:
    names: list[str] = []
    listens: list[Listen] = []
    ssl_on = False
    for d in expand(directive.block or []):
        if d.name == "server_name":
            names += d.args
        elif d.name == "listen":
            found = parse_listen(d)
            if found is not None:
                listens.append(found)
        elif d.name == "ssl" and d.args == ["on"]:
            ssl_on = True
    if not listens:
        listens.append(Listen("*", DEFAULT_PORT, False, False, None))
    return ServerBlock(directive, tuple(names), tuple(listens), ssl_on)


class MatchKind(StrEnum):
    EXACT = "exact"
    LEADING_WILDCARD = "leading wildcard"
    TRAILING_WILDCARD = "trailing wildcard"
    REGEX = "regex"
    DEFAULT = "default server"


@dataclass(frozen=True)
class Match:
    block: ServerBlock
    kind: MatchKind


def _leading(pattern: str, host: str) -> int:
    """The length of the leading wildcard `pattern` if it matches `host`, else -1."""
    if pattern.startswith("."):  # `.example.org`: the name itself and every subdomain
        base = pattern[1:]
        return len(pattern) if host == base or host.endswith(pattern) else -1
    if pattern.startswith("*."):
        return len(pattern) if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1 else -1
    return -1


def _trailing(pattern: str, host: str) -> int:
    if pattern.endswith(".*"):
        return (
            len(pattern) if host.startswith(pattern[:-1]) and len(host) > len(pattern) - 1 else -1
        )
    return -1


def regex_of(pattern: str) -> re.Pattern[str] | None:
    """A `~` server name as a Python pattern (PCRE's `(?<name>` is `(?P<name>` here)."""
    body = re.sub(r"\(\?<(?![=!])", "(?P<", pattern[1:])
    try:
        return re.compile(body, re.IGNORECASE)
    except re.error:
        return None


def select(blocks: Sequence[ServerBlock], host: str, port: int) -> Match | None:
    """The block nginx serves `host` from on `port`, and why; None if nothing listens."""
    host = host.lower().rstrip(".")
    on_port = [b for b in blocks if b.on_port(port)]
    if not on_port:
        return None
    for b in on_port:
        if any(n.lower() == host for n in b.names if not n.startswith("~")):
            return Match(b, MatchKind.EXACT)
    for finder, kind in (
        (_leading, MatchKind.LEADING_WILDCARD),
        (_trailing, MatchKind.TRAILING_WILDCARD),
    ):
        best: tuple[int, ServerBlock] | None = None
        for b in on_port:
            for n in b.names:
                size = finder(n.lower(), host) if not n.startswith("~") else -1
                if size >= 0 and (best is None or size > best[0]):
                    best = (size, b)
        if best is not None:
            return Match(best[1], kind)
    for b in on_port:
        for n in b.names:
            if n.startswith("~"):
                pattern = regex_of(n)
                if pattern is not None and pattern.search(host):
                    return Match(b, MatchKind.REGEX)
    found = default_block(on_port, port)
    return None if found is None else Match(found, MatchKind.DEFAULT)


def default_block(blocks: Sequence[ServerBlock], port: int) -> ServerBlock | None:
    """The port's default server: marked `default_server`, or the first on the port."""
    on_port = [b for b in blocks if b.on_port(port)]
    marked = [b for b in on_port if any(lis.default_server for lis in b.on_port(port))]
    found = marked or on_port
    return found[0] if found else None

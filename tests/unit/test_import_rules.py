"""What may import what (docs/architecture.md), checked on the source with `ast`.

Every `import` and `from ... import` anywhere in a module counts, including those inside
functions, since a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import acmekit

SRC = Path(acmekit.__file__).parent
PACKAGES = frozenset(p.name for p in SRC.iterdir() if (p / "__init__.py").exists())
TOP = "(top-level)"  # the shared modules directly in acmekit/: clock, files, domains, ...

# importer -> the parts of acmekit it must not import
FORBIDDEN: dict[str, frozenset[str]] = {
    "protocol": PACKAGES - {"protocol"} | {TOP},
    "client": frozenset({"server", "certbot", "cli", "fleet", "dns"}),
    "server": frozenset({"client", "certbot", "cli", "fleet"}),
    "fleet": frozenset({"certbot", "cli", "server"}),
    "certbot": frozenset({"server", "fleet", "cli", "dns"}),
    "dns": frozenset({"client", "server", "certbot", "fleet", "cli"}),
    "ct": frozenset({"client", "server", "certbot", "fleet", "dns", "cli"}),
    TOP: PACKAGES,
}
MAY_IMPORT_CLI = frozenset({"cli", "__main__"})


def part_of(path: Path) -> str:
    """The package a module of acmekit belongs to, or TOP for acmekit/NAME.py."""
    rel = path.relative_to(SRC)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return "__main__" if rel.stem == "__main__" else TOP


def imported(path: Path) -> Iterator[str]:
    """The acmekit modules `path` imports, as absolute dotted names."""
    package = ["acmekit", *path.relative_to(SRC).parent.parts]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module is None:
                yield from (f"{module}.{alias.name}" for alias in node.names)
            else:
                yield module


def target_of(module: str) -> str | None:
    """The part of acmekit a dotted module name is in; None when it is not ours."""
    parts = module.split(".")
    if parts[0] != "acmekit":
        return None
    if len(parts) == 1 or parts[1] not in PACKAGES:
        return TOP
    return parts[1]


def edges() -> set[tuple[str, str, str]]:
    """(importer's part, imported part, importing file) for every import of ours."""
    found: set[tuple[str, str, str]] = set()
    for path in SRC.rglob("*.py"):
        for module in imported(path):
            target = target_of(module)
            if target is not None and target != part_of(path):
                found.add((part_of(path), target, str(path.relative_to(SRC))))
    return found


def violations(found: set[tuple[str, str, str]]) -> list[str]:
    bad = []
    for source, target, where in sorted(found):
        if target in FORBIDDEN.get(source, frozenset()):
            bad.append(f"{where}: {source} imports {target}")
        elif target == "cli" and source not in MAY_IMPORT_CLI:
            bad.append(f"{where}: {source} imports cli")
    return bad


def test_no_module_breaks_the_import_rules() -> None:
    assert violations(edges()) == []


def test_the_walk_sees_imports_of_every_kind() -> None:
    pairs = {(source, target) for source, target, _ in edges()}
    assert {("fleet", "client"), ("certbot", "client"), ("cli", "server")} <= pairs
    assert ("cli", "certbot") in pairs  # imported only inside functions


def test_a_broken_rule_is_reported() -> None:
    found = {
        ("client", "certbot", "client/x.py"),
        ("protocol", TOP, "protocol/y.py"),
        ("fleet", "cli", "fleet/z.py"),
        ("fleet", "client", "fleet/ok.py"),
    }
    assert violations(found) == [
        "client/x.py: client imports certbot",
        "fleet/z.py: fleet imports cli",
        f"protocol/y.py: protocol imports {TOP}",
    ]

"""Keeping the processes tests start off the machine's DNS resolver.

`guard_subprocesses(os.environ)` puts `resolver_guard/` first on PYTHONPATH and turns
its `sitecustomize` on: every Python process started from then on with this environment
(the `acmekit` command line, certbot) refuses to look up any name but IP literals and
`localhost` (see that module). The runner's own process is left as it was
(`unguard_this_process`), its children guarded.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import MutableMapping
from pathlib import Path

GUARD_DIR = Path(__file__).parent / "resolver_guard"
GUARD_ENV = "ACMEKIT_TEST_RESOLVER_GUARD"


def guard_subprocesses(environ: MutableMapping[str, str]) -> None:
    """`environ` with the guard on for the Python processes started with it."""
    paths = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(GUARD_DIR) not in paths:
        environ["PYTHONPATH"] = os.pathsep.join([str(GUARD_DIR), *paths])
    environ[GUARD_ENV] = "1"


def unguard_this_process() -> None:
    """Undo the guard in this process, which got it at startup if it was started with
    a guarded environment (a pytest-xdist worker is)."""
    spec = importlib.util.spec_from_file_location(
        "acmekit_resolver_guard", GUARD_DIR / "sitecustomize.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.uninstall()

"""Loaded by every Python process a test starts (tests put this folder first on
PYTHONPATH): with ACMEKIT_TEST_RESOLVER_GUARD=1 in its environment, the process may not
ask the machine's resolver for a name. `socket.getaddrinfo`, `gethostbyname` and
`gethostbyname_ex` answer for IP literals and `localhost` (the hosts file's) as before,
and for any other name print why to standard error and raise `SystemResolverRefused`,
an AssertionError that few handlers swallow: a test must give loopback addresses or a
resolver of its own, never reach a real one.

Standard library only: it runs in this project's interpreter and in the system's (a
certbot the tests start). A `sitecustomize` this one shadows is loaded after it.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import ipaddress
import os
import socket
import sys
from typing import Any

ENV = "ACMEKIT_TEST_RESOLVER_GUARD"
LOCAL_NAMES = frozenset({"localhost", "localhost."})
_GUARDED = ("getaddrinfo", "gethostbyname", "gethostbyname_ex")


class SystemResolverRefused(AssertionError):
    """A process under test asked the machine's resolver for a name."""


def allowed(host: object, flags: int = 0) -> bool:
    """Whether looking `host` up stays off the machine's resolver: no name (a wildcard
    or loopback bind), an IP literal (a zone index too), `localhost`, or a lookup told
    to take numeric hosts only (AI_NUMERICHOST: the C library never asks a resolver)."""
    if host is None or flags & socket.AI_NUMERICHOST:
        return True
    text = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
    if text in ("", "<broadcast>") or text.lower() in LOCAL_NAMES:
        return True
    try:  # not "[::1]": the C library reads that as a name
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _refuse(name: str, host: object) -> SystemResolverRefused:
    message = (
        f"{name}({host!r}) would ask the machine's DNS resolver: a process under test "
        "may only look up IP literals and localhost (give it a loopback address, or a "
        "resolver of the test's own)"
    )
    print(f"resolver guard: {message}", file=sys.stderr, flush=True)
    return SystemResolverRefused(message)


def _guard(name: str, original: Any) -> Any:
    @functools.wraps(original)
    def guarded(host: object, *args: Any, **kwargs: Any) -> Any:
        flags = kwargs.get("flags", args[4] if len(args) > 4 else 0)
        if not allowed(host, flags if isinstance(flags, int) else 0):
            raise _refuse(name, host)
        return original(host, *args, **kwargs)

    guarded.resolver_guard = True  # type: ignore[attr-defined]
    return guarded


def install() -> None:
    for name in _GUARDED:
        current = getattr(socket, name)
        if not getattr(current, "resolver_guard", False):
            setattr(socket, name, _guard(name, current))


def uninstall() -> None:
    """Back to the unguarded functions (the test runner's own process keeps those)."""
    for name in _GUARDED:
        current = getattr(socket, name)
        if getattr(current, "resolver_guard", False):
            setattr(socket, name, current.__wrapped__)


def _load_shadowed() -> None:
    """The `sitecustomize` further down the path, as Python would have loaded it."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


if __name__ == "sitecustomize":  # loaded at startup (not by path, to uninstall it)
    if os.environ.get(ENV) == "1":
        install()
    _load_shadowed()

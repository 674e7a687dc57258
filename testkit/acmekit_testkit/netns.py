"""A private network namespace for tests that need well-known ports or their own resolver.

    with network_namespace() as ns:
        proc = ns.popen(["/usr/bin/pebble", ...], stdout=log)   # stopped by its PID later
        ns.run(["curl", "--silent", url], capture_output=True)

Every command runs through `ip netns exec NAME`, which execs it in place (the PID that
`popen` returns is the command's own) with nothing but a loopback interface, brought up
here. `ip netns exec` also bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf for
what it runs; that file names 127.0.0.1, so the system resolver of everything inside is
whatever the test serves on 127.0.0.1:53 in the namespace, and no command run inside can
reach any network but that loopback. The namespace gets a random name, so tests run in
parallel; it and its /etc/netns/NAME directory are deleted when the block ends.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acmekit_testkit.resolvers import GUARD_ENV

IP = "ip"
NETNS_ETC = Path("/etc/netns")
# Proxy settings would send HTTP clients inside the namespace towards a host it cannot reach.
PROXY_VARIABLES = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy", "socks_proxy"}
)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without proxy variables, plus `extra`. Without the
    resolver guard too: in the namespace the system resolver is the test's own."""
    env = {
        k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES and k != GUARD_ENV
    }
    return {**env, **(extra or {})}


@dataclass(frozen=True)
class NetNs:
    name: str
    resolv_conf: Path

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped so that it runs inside the namespace."""
        return [IP, "netns", "exec", self.name, *argv]

    def popen(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside the namespace; `env` is added to a proxy-free environment."""
        return subprocess.Popen(self.command(argv), env=clean_env(env), **kwargs)

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `argv` inside the namespace to completion (not checked: look at returncode)."""
        result: subprocess.CompletedProcess[bytes] = subprocess.run(
            self.command(argv), env=clean_env(env), timeout=timeout, check=False, **kwargs
        )
        return result


def _ip(*args: str) -> None:
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr}")


@contextmanager
def network_namespace(prefix: str = "acmekit", nameserver: str = "127.0.0.1") -> Iterator[NetNs]:
    """A new network namespace with loopback up and `nameserver` as its system resolver."""
    name = f"{prefix}-{secrets.token_hex(5)}"
    etc = NETNS_ETC / name
    _ip("netns", "add", name)
    try:
        etc.mkdir(parents=True)
        resolv_conf = etc / "resolv.conf"
        resolv_conf.write_text(f"nameserver {nameserver}\n")
        _ip("netns", "exec", name, IP, "link", "set", "lo", "up")
        yield NetNs(name, resolv_conf)
    finally:
        try:
            _ip("netns", "delete", name)
        finally:
            shutil.rmtree(etc, ignore_errors=True)
            with suppress(OSError):  # only if no other namespace uses it
                NETNS_ETC.rmdir()

"""BIND 9 (Debian's named) on a free loopback port, in the foreground, for tests and the
DNS benchmark.

    def conf(directory, port): return authoritative_options(directory, port) + 'zone ...'
    with running_named(tmp_path, conf, {"x.test.zone": ZONE}, ready=answers) as named:
        named.port, named.pid

The config, the zone files and named's log live in the given directory; named is
stopped by its PID when the block ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from acmekit_testkit.ports import free_tcp_udp_port
from acmekit_testkit.processes import logged_process, wait_ready

NAMED = "/usr/sbin/named"


@dataclass(frozen=True)
class Named:
    port: int
    pid: int


def authoritative_options(directory: Path, port: int) -> str:
    """named.conf's options for an authoritative-only server on 127.0.0.1:`port` that keeps
    its files in `directory`, with no control channel."""
    return f"""\
options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
}};
controls {{ }};
"""


@contextmanager
def running_named(
    directory: Path,
    conf: Callable[[Path, int], str],
    zones: Mapping[str, str],
    *,
    ready: Callable[[int], bool],
    threads: int | None = None,
) -> Iterator[Named]:
    """named with the config `conf(directory, port)` and the zone files `zones` (file name -> text)
    written into `directory`, once `ready(port)` holds; `threads` sets `-n`."""
    port = free_tcp_udp_port()
    for name, text in zones.items():
        (directory / name).write_text(text)
    config = directory / "named.conf"
    config.write_text(conf(directory, port))
    argv = [NAMED, "-g", *(["-n", str(threads)] if threads else []), "-c", str(config)]
    log = directory / "named.log"
    with logged_process(argv, log) as proc:
        wait_ready(proc, lambda: ready(port), log, "named")
        yield Named(port, proc.pid)

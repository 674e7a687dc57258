"""Run Debian's pebble-challtestsrv as a loopback DNS server for Pebble's VA.

It answers every A query with 127.0.0.1 and serves the TXT records set through its
management API (`/set-txt`, `/clear-txt`). Its HTTP, HTTPS and TLS-ALPN responders
are switched off so that it takes no fixed ports.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query

from acmekit_testkit.ports import free_port, free_tcp_udp_port
from acmekit_testkit.processes import logged_process, wait_ready

CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


@dataclass(frozen=True)
class ChalltestsrvHandle:
    dns_port: int
    management_url: str
    pid: int

    def _post(self, path: str, doc: dict[str, str]) -> None:
        req = urllib.request.Request(
            self.management_url + path, data=json.dumps(doc).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def set_txt(self, host: str, value: str) -> None:
        """Serve TXT `value` at `host` (a fully qualified name with the trailing dot)."""
        self._post("/set-txt", {"host": host, "value": value})

    def clear_txt(self, host: str) -> None:
        self._post("/clear-txt", {"host": host})


def _dns_answers(port: int) -> bool:
    """True once the port answers our question. Anything else (no answer, or an answer
    to another question from whatever else briefly held a port found free) is "not
    yet": `wait_ready` then tells a server that never came up from one still starting."""
    query = dns.message.make_query("ready.test.", "A")
    try:
        dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (OSError, dns.exception.DNSException):
        return False
    return True


@contextmanager
def running_challtestsrv(tmp_path: Path) -> Iterator[ChalltestsrvHandle]:
    """pebble-challtestsrv answering every name with 127.0.0.1, until the block ends."""
    dns_port, mgmt = free_tcp_udp_port(), free_port()
    argv = [
        CHALLTESTSRV,
        "-dns01", f"127.0.0.1:{dns_port}",
        "-management", f"127.0.0.1:{mgmt}",
        "-http01", "", "-https01", "", "-tlsalpn01", "",
        "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
    ]  # fmt: skip
    log = tmp_path / "challtestsrv.log"
    with logged_process(argv, log) as proc:
        wait_ready(proc, lambda: _dns_answers(dns_port), log, "challtestsrv", timeout=10)
        yield ChalltestsrvHandle(dns_port, f"http://127.0.0.1:{mgmt}", proc.pid)

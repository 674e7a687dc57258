"""`acmekit dns` with few file descriptors against idle TCP connections from many
addresses (each within its share of 64): the server holds no more connections than its
total bound, below its descriptor limit, so its HTTP API and DNS over TCP still answer."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from acmekit_testkit.dnsserver import dns_server_process

OPEN_FILES = 256  # the default bound is then 128 connections


def hold_idle(port: int, addresses: int, each: int) -> list[socket.socket]:
    """`each` idle connections from each of 127.0.0.2, 127.0.0.3, ..."""
    held = []
    for a in range(2, 2 + addresses):
        for _ in range(each):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(2)
            sock.bind((f"127.0.0.{a}", 0))
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:  # a server out of descriptors stops accepting
                sock.close()
                continue
            held.append(sock)
    return held


def test_idle_connections_from_many_addresses_do_not_take_every_descriptor(
    tmp_path: Path,
) -> None:
    with dns_server_process(tmp_path, "--zone", "fd.test", open_files=OPEN_FILES) as server:
        held = hold_idle(server.dns_port, addresses=5, each=64)  # 320 > OPEN_FILES
        try:
            with urllib.request.urlopen(server.api_url + "/health", timeout=10) as resp:
                assert resp.status == 200
            query = dns.message.make_query("a.fd.test", "TXT")
            reply = dns.query.tcp(query, "127.0.0.1", port=server.dns_port, timeout=10)
            assert reply.rcode() == dns.rcode.NOERROR and reply.id == query.id
        finally:
            for sock in held:
                sock.close()

"""DNS benchmark: TXT queries per second over UDP, `acmekit dns` against BIND 9, same run.

What it measures: for each server, answered queries per second from one load generator
and the server's CPU microseconds per answered query (utime + stime from /proc), and the
ratio acmekit / BIND of both.

How: each server gets a one-record zone `bench.test` with a TXT at
`_acme-challenge.bench.test` (BIND from a zone file generated into a temporary
directory, `named -g -n 1`, so one worker thread; ours from its HTTP API). The load
generator in this process keeps `--window` queries in flight on one UDP socket: it sends
a window, then sends one new query for every answer it reads, for `--seconds` after a
short warm-up; a read that times out refills the window. Every answer's ID is checked.
With two or more CPUs the server is pinned to CPU 0 and the generator to CPU 1.

Our server keeps a cache of whole answers (4 MiB, case-insensitive), so a repeated question
is cheap. `--names 20000` cycles through that many TXT owners, so that every question
misses the cache and the uncached path is measured (the fast path of
`acmekit.dns.fastpath`, as these questions have its shape); `--mixed-case` randomizes
the case of each name (DNS 0x20); `--absent` asks for names that do not exist
(NXDOMAIN with the SOA, as a random-subdomain flood gets). Ours is loaded from a state
file written here, so that start-up needs no API calls.

Run: `.venv/bin/python bench/dns_server.py [--seconds 3] [--window 32] [--names N] [--mixed-case]
[--absent] [--servers acmekit,bind]`
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _common import cpu_seconds
from acmekit_testkit.bind import authoritative_options, running_named
from acmekit_testkit.processes import stop_process, wait_ready

NAME = "_acme-challenge.bench.test."
VALUE = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"


@dataclass(frozen=True)
class Result:
    name: str
    qps: float
    cpu_us_per_query: float


def owner(i: int) -> str:
    """The i-th TXT owner: NAME itself, then _acme-challenge.h<i>.bench.test."""
    return NAME if i == 0 else f"_acme-challenge.h{i}.bench.test."


def query_wire(qid: int, names: int = 1, mixed_case: bool = False, absent: bool = False) -> bytes:
    """A TXT query with EDNS (payload 1232), as resolvers send them, for the owner
    `qid % names` (with `absent`, a name next to it that has no records); with
    `mixed_case` the name's letters get a case drawn from the ID (DNS 0x20, as Unbound's
    use-caps-for-id sends)."""
    name = owner(qid % names)
    if absent:
        name = f"_acme-challenge.none{qid % names}.bench.test."
    if mixed_case:
        rng = random.Random(qid)
        name = "".join(c.upper() if rng.random() < 0.5 else c for c in name)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    question = labels + b"\x00" + struct.pack("!HH", 16, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return struct.pack("!HHHHHH", qid, 0x0000, 1, 0, 0, 1) + question + opt


def answers(port: int) -> bool:
    """Does a server on 127.0.0.1:`port` answer the benchmark query with the record?"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(query_wire(7), ("127.0.0.1", port))
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            return False
    return reply[:2] == b"\x00\x07" and reply[3] & 0x0F == 0 and VALUE.encode() in reply


def write_state(path: Path, names: int) -> None:
    from acmekit.dns.state import save_state
    from acmekit.dns.store import RecordStore, RecordType, make_rdata, parse_name

    store = RecordStore(("bench.test",))
    for i in range(names):
        store.add(parse_name(owner(i)), make_rdata(RecordType.TXT, VALUE))
    save_state(path, {"store": store.snapshot(), "registrations": []})


@contextmanager
def running_acmekit(workdir: Path, names: int) -> Iterator[tuple[int, int]]:
    write_state(workdir / "state.json", names)
    argv = [sys.executable, "-m", "acmekit", "dns", "--listen", "127.0.0.1:0"]
    argv += ["--no-api", "--zone", "bench.test", "--state", str(workdir / "state.json")]
    with (workdir / "acmekit-dns.log").open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()
        port = int(banner.strip().rsplit(":", 1)[1])
        wait_ready(proc, lambda: answers(port), workdir / "acmekit-dns.log", "acmekit dns")
        yield port, proc.pid
    finally:
        stop_process(proc)


def named_conf(directory: Path, port: int) -> str:
    zone = f'zone "bench.test" {{ type primary; file "{directory}/bench.test.zone"; }};\n'
    return authoritative_options(directory, port) + zone


ZONE = """\
$TTL 0
@ IN SOA ns1.bench.test. hostmaster.bench.test. 1 60 10 600 0
@ IN NS ns1.bench.test.
ns1 IN A 127.0.0.1
"""


@contextmanager
def running_bind(workdir: Path, names: int) -> Iterator[tuple[int, int]]:
    records = "".join(f'{owner(i)} IN TXT "{VALUE}"\n' for i in range(names))
    zones = {"bench.test.zone": ZONE + records}
    with running_named(workdir, named_conf, zones, ready=answers, threads=1) as named:
        yield named.port, named.pid


def load(port: int, seconds: float, window: int, wires: list[bytes]) -> int:
    """Answers received in `seconds` with `window` queries kept in flight."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(0.5)
        qid, answered = 0, 0
        deadline = time.monotonic() + seconds
        for _ in range(window):
            sock.send(wires[qid])
            qid = (qid + 1) & 0xFFFF
        while True:
            try:
                sock.recv(4096)
            except TimeoutError:
                for _ in range(window):
                    sock.send(wires[qid])
                    qid = (qid + 1) & 0xFFFF
                continue
            answered += 1
            if answered & 0xFF == 0 and time.monotonic() > deadline:
                return answered
            sock.send(wires[qid])
            qid = (qid + 1) & 0xFFFF


def pin(pid: int, cpu: int) -> None:
    if os.cpu_count() and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {cpu})


def measure(name: str, port: int, pid: int, args: argparse.Namespace) -> Result:
    pin(pid, 0)
    pin(0, 1)
    wires = [query_wire(i, args.names, args.mixed_case, args.absent) for i in range(65536)]
    load(port, 0.5, args.window, wires)  # warm-up
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    answered = load(port, args.seconds, args.window, wires)
    elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    return Result(name, answered / elapsed, cpu / answered * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--servers", default="acmekit,bind")
    parser.add_argument("--mixed-case", action="store_true", help="random case (DNS 0x20)")
    parser.add_argument("--names", type=int, default=1, help="distinct TXT owners to cycle")
    parser.add_argument("--absent", action="store_true", help="ask for names with no records")
    args = parser.parse_args()
    starters = {"acmekit": running_acmekit, "bind": running_bind}
    results: dict[str, Result] = {}
    for name in args.servers.split(","):
        with (
            tempfile.TemporaryDirectory() as tmp,
            starters[name](Path(tmp), args.names) as (port, pid),
        ):
            results[name] = measure(name, port, pid, args)
        r = results[name]
        print(f"{name:8s} {r.qps:9.0f} queries/s  {r.cpu_us_per_query:6.1f} us CPU/query")
    if {"acmekit", "bind"} <= set(results):
        ours, bind = results["acmekit"], results["bind"]
        print(
            f"ratio acmekit/bind: {ours.qps / bind.qps:.2f}x queries/s, "
            f"{ours.cpu_us_per_query / bind.cpu_us_per_query:.2f}x CPU per query"
        )


if __name__ == "__main__":
    main()

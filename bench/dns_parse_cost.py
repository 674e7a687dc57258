"""The DNS handler's worst cost per octet: instructions per message of hostile shapes.

Each shape is a message built to cost dnspython's parse (and our answer) the most for
its size within `acmekit.dns.limits`' bounds, beside a plain query that misses the cache
and the fast path (a cookie sends it down the general path), the same with a 125-label
name, and the 65 KB query those bounds now refuse unparsed. Each message of a shape
differs from the one before in its ID (and the queries with a cookie in it, the only
shapes the cache would keep), so that nothing is served from the cache.

    .venv/bin/python bench/dns_parse_cost.py [--shapes a,b] [--counts 5,25]

runs the handler in this interpreter under `valgrind --tool=callgrind` twice per shape,
handling N1 and then N2 messages after the same start-up, and prints the instructions
per message as the difference of the two totals over N2 - N1 (start-up cancels out),
and per octet of the message. Without valgrind, `--cpu` prints process CPU instead.
"""

from __future__ import annotations

import argparse
import base64
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _callgrind import read_dump

LONG_NAME = b"\x01a" * 126 + b"\x00"  # 253 octets, 126 labels
COOKIE = 10


def _pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def long_names_query(i: int) -> bytes:
    """IXFR-shaped: a 126-label question, an SOA whose three names point to it, an OPT
    and a TSIG owned by a pointer to it: every name a query may hold, at its longest."""
    question = LONG_NAME + struct.pack("!HH", 251, 1)
    soa_rdata = _pointer(12) + _pointer(12) + struct.pack("!5I", i, 1, 1, 1, 1)
    soa = _pointer(12) + struct.pack("!HHIH", 6, 1, 0, len(soa_rdata)) + soa_rdata
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    mac = b"m" * 32
    tsig_rdata = b"\x0bhmac-sha256\x00" + struct.pack("!HIHH", 0, 1, 300, 32) + mac
    tsig_rdata += struct.pack("!HHH", i & 0xFFFF, 0, 0)
    tsig = _pointer(12) + struct.pack("!HHIH", 250, 255, 0, len(tsig_rdata)) + tsig_rdata
    header = struct.pack("!6H", i & 0xFFFF, 0, 1, 0, 1, 2)
    return header + question + soa + opt + tsig


def options_query(i: int) -> bytes:
    """A query at the size bound whose OPT holds 1,000 empty unknown options."""
    question = b"\x01a\x01x\x04test\x00" + struct.pack("!HH", 16, 1)
    rdata = struct.pack("!HH", 65001, 0) * 1_012 + struct.pack("!HH", 65002, 4)
    rdata += struct.pack("!I", i)
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(rdata)) + rdata
    return struct.pack("!6H", i & 0xFFFF, 0x0100, 1, 0, 0, 1) + question + opt


def update_pointers(i: int) -> bytes:
    """An UPDATE at the count bounds: a 126-label zone, 16 prerequisites and 64 updates
    each owned by a pointer to it (no TSIG: refused after the parse)."""
    records = [_pointer(12) + struct.pack("!HHIH", 16, 254, 0, 0) for _ in range(16)]
    records += [_pointer(12) + struct.pack("!HHIH", 16, 255, i, 0) for _ in range(64)]
    header = struct.pack("!6H", i & 0xFFFF, 0x2800, 1, 16, 64, 0)
    return header + LONG_NAME + struct.pack("!HH", 6, 1) + b"".join(records)


def update_strings(i: int) -> bytes:
    """An UPDATE at the size bound: one TXT of 4,000 one-octet strings."""
    zone = b"\x01x\x04test\x00"
    rdata = b"\x01a" * 4_076
    record = b"\x01a\xc0\x0c" + struct.pack("!HHIH", 16, 1, i, len(rdata)) + rdata
    header = struct.pack("!6H", i & 0xFFFF, 0x2800, 1, 0, 1, 0)
    return header + zone + struct.pack("!HH", 6, 1) + record


def plain_uncached(i: int) -> bytes:
    """A 4-label question with a resolver's cookie: the general path, every time anew."""
    name = f"n{i}.a.x.test".encode()
    labels = b"".join(bytes([len(p)]) + p for p in name.split(b".")) + b"\x00"
    cookie = struct.pack("!HH", COOKIE, 8) + struct.pack("!Q", i)
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(cookie)) + cookie
    header = struct.pack("!6H", i & 0xFFFF, 0x0100, 1, 0, 0, 1)
    return header + labels + struct.pack("!HH", 16, 1) + opt


def long_question(i: int) -> bytes:
    """A question of 125 labels (123 of them one octet, in 254 octets) with a cookie:
    the longest name a query may hold within its label budget, in the general path."""
    labels = b"\x01a" * 123 + b"\x01x\x04test\x00"
    cookie = struct.pack("!HH", COOKIE, 8) + struct.pack("!Q", i)
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(cookie)) + cookie
    header = struct.pack("!6H", i & 0xFFFF, 0x0100, 1, 0, 0, 1)
    return header + labels + struct.pack("!HH", 16, 1) + opt


def refused_65k(i: int) -> bytes:
    """The reported attack: one question and 5,400 records owned by pointers."""
    question = b"\x0f_acme-challenge\x02rp\x01x\x04test\x00" + struct.pack("!HH", 16, 1)
    first = LONG_NAME + struct.pack("!HHIH", 10, 1, i, 0)
    rest = b"".join(_pointer(12 + len(question)) + struct.pack("!HHIH", 10, 1, n, 0)
                    for n in range(1, 5_400))  # fmt: skip
    return struct.pack("!6H", i & 0xFFFF, 0x0100, 1, 0, 0, 5_400) + question + first + rest


SHAPES: dict[str, Callable[[int], bytes]] = {
    "plain-uncached": plain_uncached,
    "long-names-query": long_names_query,
    "long-question": long_question,
    "options-query": options_query,
    "update-pointers": update_pointers,
    "update-strings": update_strings,
    "refused-65k": refused_65k,
}


def run_shape(shape: str, count: int) -> int:
    """Handle `count` messages of `shape` (in the child); the size of one."""
    from acmekit.dns.handler import DnsHandler
    from acmekit.dns.store import RecordStore
    from acmekit.dns.tsig import make_keyring, parse_key

    secret = base64.b64encode(b"0" * 32).decode()
    handler = DnsHandler(RecordStore(["x.test"]), make_keyring([parse_key(f"k:{secret}")]))
    base = SHAPES[shape](1)
    handle = handler.handle_stream if shape == "long-names-query" else handler.handle
    handle(base)  # warm: first-use costs count in neither run
    for n in range(2, count + 2):
        ident = n.to_bytes(2, "big")
        handle(
            ident + base[2:-4] + n.to_bytes(4, "big")
            if shape in ("plain-uncached", "long-question")
            else ident + base[2:]
        )
    return len(base)


def instructions(shape: str, count: int, out: Path) -> int:
    dump = out / f"{shape}.{count}"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", sys.executable]
    argv += [__file__, "--child", shape, str(count)]
    subprocess.run(argv, check=True, capture_output=True)
    return read_dump(dump).instructions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--counts", default="5,25")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cpu", action="store_true", help="process CPU, not instructions")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_shape(args.child[0], int(args.child[1]))
        return
    shapes = args.shapes.split(",")
    low, high = (int(c) for c in args.counts.split(","))
    if args.cpu:
        run_shape(shapes[0], 1)  # imports
        for shape in shapes:
            started = time.process_time()
            size = run_shape(shape, high)
            each = (time.process_time() - started) / high
            print(
                f"{shape:18} {size:6} octets {each * 1e6:9.0f} µs {each * 1e9 / size:7.0f} ns/octet"
            )
        return
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        out = Path(tmp)
        runs = {(s, c): pool.submit(instructions, s, c, out) for s in shapes for c in (low, high)}
        for shape in shapes:
            each = (runs[shape, high].result() - runs[shape, low].result()) / (high - low)
            size = len(SHAPES[shape](1))
            print(f"{shape:18} {size:6} octets {each:13,.0f} instructions", end=" ")
            print(f"{each / size:9,.0f} per octet")


if __name__ == "__main__":
    main()

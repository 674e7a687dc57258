"""The CT log: add-pre-chain per second over HTTP, and a large tree's proofs and memory.

    .venv/bin/python bench/ct.py [--submissions 2000] [--entries 100000] [--db sqlite|postgresql]

1. Submissions: `acmekit ct` as a process; precertificates issued beforehand are posted
   to add-pre-chain from a few threads, each on a kept-alive connection (`--close`: one
   per request). Prints entries per second and the log's CPU time per entry (/proc, the
   process and its children), then the same for get-sth.
2. Tree: `--entries` synthetic entries are stored and sequenced in batches through the
   log's own store; prints sequencing throughput, the process's peak RSS as the tree
   grows (flat: a batch needs only the right edge of the tree), and the time of a root,
   an audit path, a consistency proof and a 1,000-entry read in the full tree.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import random
import resource
import statistics
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from _common import cpu_seconds, fresh_database
from acmekit.ct import merkle
from acmekit.ct.log import now_ms
from acmekit.ct.schema import entries
from acmekit.ct.store import CtStore
from acmekit.protocol import ct
from acmekit_testkit.ctlog import ca_hierarchy, chain_json, leaf_certificate, running_ct_log


def submissions(base: Path, count: int, threads: int, close: bool = False) -> None:
    issuer = ca_hierarchy(base / "ca")
    bodies = [
        json.dumps(
            chain_json(
                [leaf_certificate(issuer, f"b{i}.example", precert=True), issuer.intermediate_cert]
            )
        ).encode()
        for i in range(count)
    ]
    with running_ct_log(base / "log", base / "ca" / "root.pem", mmd=5) as log:
        parts = urllib.parse.urlsplit(log.url)
        path = parts.path + "ct/v1/add-pre-chain"
        local = threading.local()

        def post(body: bytes) -> None:
            # One kept-alive connection per client thread, as a CA's HTTP session keeps
            # them; --close opens one per request.
            conn = getattr(local, "conn", None)
            if conn is None or close:
                conn = local.conn = http.client.HTTPConnection(parts.netloc, timeout=30)
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"add-pre-chain: HTTP {resp.status}")
            if close:
                conn.close()

        def get_sth(_: int) -> None:
            conn = getattr(local, "conn", None)
            if conn is None or close:
                conn = local.conn = http.client.HTTPConnection(parts.netloc, timeout=30)
            conn.request("GET", parts.path + "ct/v1/get-sth")
            conn.getresponse().read()
            if close:
                conn.close()

        cpu0, t0 = cpu_seconds(log.process.pid), time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(post, bodies))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(log.process.pid) - cpu0
        local = threading.local()
        cpu0, t0 = cpu_seconds(log.process.pid), time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(get_sth, range(count)))
        sth_wall, sth_cpu = time.perf_counter() - t0, cpu_seconds(log.process.pid) - cpu0
    how = "a connection per request" if close else "kept-alive connections"
    print(
        f"add-pre-chain: {count} in {wall:.2f} s = {count / wall:.0f}/s, {threads} clients, {how}"
    )
    print(f"  log CPU per entry: {cpu / count * 1e6:.0f} us (signature, checks, database, HTTP)")
    print(f"get-sth: {count / sth_wall:.0f}/s, log CPU per request {sth_cpu / count * 1e6:.0f} us")


def tree(url: str, count: int, batch: int) -> None:
    store = CtStore.from_url(url)
    signing = ec.generate_private_key(ec.SECP256R1())

    def sign(head: ct.TreeHead) -> ct.SignedTreeHead:
        return ct.sign_tree_head(signing, head)

    store.init_tree(sign, now_ms())
    t_insert = t_seq = 0.0
    done = 0
    checkpoints = {count // 10, count // 2, count}
    while done < count:
        n = min(batch, count - done)
        rows = []
        for i in range(done, done + n):
            leaf = b"\0\0" + i.to_bytes(8, "big") + b"entry" + i.to_bytes(8, "big")
            rows.append(
                {
                    "identity": hashlib.sha256(leaf).digest(),
                    "leaf_hash": merkle.leaf_hash(leaf),
                    "timestamp": i,
                    "leaf_input": leaf,
                    "extra_data": b"",
                    "sct_signature": b"",
                    "seq": i,  # the index an SCT would carry, given as it is stored
                }
            )
        t0 = time.perf_counter()
        with store.engine.begin() as conn:
            conn.execute(sa.insert(entries), rows)
        t1 = time.perf_counter()
        placed = store.sequence(sign, now_ms(), batch, 0)
        t_seq += time.perf_counter() - t1
        t_insert += t1 - t0
        assert placed == n
        done += n
        if any(done >= c > done - n for c in checkpoints):
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  tree of {done}: peak RSS {rss:.0f} MB")
    print(
        f"tree: {count} entries stored in {t_insert:.1f} s, sequenced in {t_seq:.1f} s "
        f"({count / t_seq:.0f}/s, batches of {batch})"
    )

    def timed(what: str, fn: Callable[[], object], runs: int = 50) -> None:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        print(f"  {what}: median {statistics.median(times):.2f} ms, max {max(times):.2f} ms")

    rng = random.Random(1)
    timed("root of the full tree", lambda: store.root(count))
    timed(
        "audit path",
        lambda: store.range_hashes(merkle.inclusion_ranges(rng.randrange(count), count)),
    )
    timed(
        "consistency proof",
        lambda: store.range_hashes(merkle.consistency_ranges(rng.randrange(1, count), count)),
    )
    timed("1,000 entries", lambda: store.leaves(count // 2, count // 2 + 999), runs=20)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--close", action="store_true", help="a new connection per request")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if args.submissions:
            submissions(base, args.submissions, args.threads, args.close)
        if args.entries:
            with fresh_database(args.db, base, "tree.db", prefix="acmekit_ctbench") as url:
                tree(url, args.entries, args.batch)


if __name__ == "__main__":
    main()

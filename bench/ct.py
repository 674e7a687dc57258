"""The CT log: add-pre-chain per second over HTTP, and a large tree's proofs and memory.

    .venv/bin/python bench/ct.py [--submissions 2000] [--entries 100000] [--db sqlite|postgresql]

1. Submissions: `acmekit ct` as a process (on `--db`); precertificates issued beforehand are posted
   to add-pre-chain from a few threads, each on a kept-alive connection (`--close`: one
   per request). Prints entries per second and the log's CPU time per entry (/proc, the
   process and its children), then the same for get-sth; also the log's context switches
   and read/write system calls per entry (/proc: the kernel's side of the work).
   `--read-probe` also sends get-sth from one more client while the submissions run
   (one every 2 ms) and prints its latency: the time a read waits behind the log's
   submission work (a batch written on the event loop holds every request).
   `--callgrind` runs the log under valgrind's callgrind, counting only while the
   requests run, and prints the log's instructions per request: load independent, so
   two versions compare on a busy machine (rates and CPU times then mean nothing).
2. Tree: `--entries` synthetic entries are stored and sequenced in batches through the
   log's own store; prints sequencing throughput, the process's peak RSS as the tree
   grows (flat: a batch needs only the right edge of the tree), and the time of a root,
   an audit path, a consistency proof and a 1,000-entry read in the full tree.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import random
import resource
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
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
from acmekit_testkit.ctlog import (
    RunningLog,
    ca_hierarchy,
    chain_json,
    ct_log_argv,
    leaf_certificate,
    running_ct_log,
)
from acmekit_testkit.processes import logged_process, wait_for_lines


@contextlib.contextmanager
def under_callgrind(state_dir: Path, roots: Path, out: Path) -> Iterator[RunningLog]:
    """`acmekit ct` under callgrind, instrumentation off until `counting` turns it on."""
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    output = state_dir.parent / "log.txt"
    with logged_process([*argv, *ct_log_argv(state_dir, roots, mmd=5)], output) as proc:
        # valgrind starts Python slowly (and slower on a busy machine)
        lines = wait_for_lines(proc, output, ["ct log:", "log id:"], "acmekit ct", timeout=600)
        yield RunningLog(lines["ct log:"], lines["log id:"], Path(), state_dir, output, proc)


@contextlib.contextmanager
def counting(pid: int | None) -> Iterator[None]:
    if pid is None:
        yield
        return
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(
            ["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True
        )
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)


def instructions(out: Path) -> int:
    """The instructions counted so far: the totals of every dump callgrind wrote."""
    total = 0
    for dump in out.parent.glob(out.name + "*"):
        for line in dump.read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


def callgrind(base: Path, count: int, threads: int) -> None:
    """Instructions of the log per add-pre-chain and per get-sth (SQLite)."""
    issuer = ca_hierarchy(base / "ca")
    bodies = [
        json.dumps(
            chain_json(
                [leaf_certificate(issuer, f"c{i}.example", precert=True), issuer.intermediate_cert]
            )
        ).encode()
        for i in range(count + threads)
    ]
    out = base / "callgrind.out"
    with under_callgrind(base / "log", base / "ca" / "root.pem", out) as log:
        client = Client(log.url)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(client.add, bodies[:threads]))  # connections, issuers: known
            with counting(log.process.pid):
                list(pool.map(client.add, bodies[threads:]))
            added = instructions(out)
            with counting(log.process.pid):
                list(pool.map(client.sth, range(count)))
            sth = instructions(out) - added
    print(f"callgrind: add-pre-chain {added / count / 1e3:.0f} k instructions per entry")
    print(f"callgrind: get-sth {sth / count / 1e3:.0f} k instructions per request")


class Client:
    """One kept-alive connection per client thread, as a CA's HTTP session keeps them."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.netloc, self.path = parts.netloc, parts.path
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.netloc, timeout=300)
        return conn

    def add(self, body: bytes) -> None:
        conn = self._conn()
        conn.request(
            "POST", self.path + "ct/v1/add-pre-chain", body, {"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"add-pre-chain: HTTP {resp.status}")

    def sth(self, _: int) -> None:
        conn = self._conn()
        conn.request("GET", self.path + "ct/v1/get-sth")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"get-sth: HTTP {resp.status}")


class ReadProbe:
    """get-sth on a connection of its own, one every `pause` seconds, until stopped:
    the latency of each (wall time, so it carries the machine's load as well)."""

    def __init__(self, netloc: str, path: str, pause: float = 0.002) -> None:
        self.netloc, self.path, self.pause = netloc, path, pause
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.netloc, timeout=30)
        while not self._stop.wait(self.pause):
            t0 = time.perf_counter()
            conn.request("GET", self.path + "ct/v1/get-sth")
            resp = conn.getresponse()
            resp.read()
            self.latencies.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise RuntimeError(f"get-sth: HTTP {resp.status}")
        conn.close()

    def report(self) -> None:
        got = sorted(self.latencies)
        if not got:
            return
        p99 = got[min(len(got) - 1, int(len(got) * 0.99))]
        print(
            f"  get-sth during the submissions: {len(got)} requests, median "
            f"{statistics.median(got) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, "
            f"max {got[-1] * 1e3:.2f} ms"
        )


def submissions(
    base: Path,
    count: int,
    threads: int,
    close: bool = False,
    db: str | None = None,
    probe: bool = False,
) -> tuple[float, float, float, float]:
    """One run on a new log: add-pre-chain per second, the log's CPU seconds per entry,
    get-sth per second, the log's CPU seconds per get-sth. `probe`: a ReadProbe runs
    alongside the submissions (its requests' CPU counted in the entries')."""
    issuer = ca_hierarchy(base / "ca")
    bodies = [
        json.dumps(
            chain_json(
                [leaf_certificate(issuer, f"b{i}.example", precert=True), issuer.intermediate_cert]
            )
        ).encode()
        for i in range(count)
    ]
    with running_ct_log(base / "log", base / "ca" / "root.pem", mmd=5, db=db) as log:
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

        kernel0 = kernel_counts(log.process.pid)
        reads = ReadProbe(parts.netloc, parts.path) if probe else contextlib.nullcontext()
        cpu0, t0 = cpu_seconds(log.process.pid), time.perf_counter()
        with reads, ThreadPoolExecutor(threads) as pool:
            list(pool.map(post, bodies))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(log.process.pid) - cpu0
        kernel = {k: v - kernel0[k] for k, v in kernel_counts(log.process.pid).items()}
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
    print(
        f"  per entry: {kernel['voluntary'] / count:.2f} voluntary and "
        f"{kernel['involuntary'] / count:.2f} involuntary context switches, "
        f"{kernel['syscr'] / count:.2f} read and {kernel['syscw'] / count:.2f} write system calls"
    )
    if isinstance(reads, ReadProbe):
        reads.report()
    print(f"get-sth: {count / sth_wall:.0f}/s, log CPU per request {sth_cpu / count * 1e6:.0f} us")
    return count / wall, cpu / count, count / sth_wall, sth_cpu / count


def kernel_counts(pid: int) -> dict[str, int]:
    """The log process's context switches (all its threads) and read/write system calls
    so far, from /proc."""
    counts = {"voluntary": 0, "involuntary": 0, "syscr": 0, "syscw": 0}
    for tid in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (tid / "status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name == "voluntary_ctxt_switches":
                    counts["voluntary"] += int(value)
                elif name == "nonvoluntary_ctxt_switches":
                    counts["involuntary"] += int(value)
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("syscr", "syscw"):
            counts[name] = int(value)
    return counts


def least_flattering(runs: list[tuple[float, float, float, float]]) -> None:
    """Of several runs, the lowest rates and the highest CPU figures."""
    rate, cpu, sth_rate, sth_cpu = (
        min(r[0] for r in runs),
        max(r[1] for r in runs),
        min(r[2] for r in runs),
        max(r[3] for r in runs),
    )
    print(
        f"least flattering of {len(runs)} runs: add-pre-chain {rate:.0f}/s, "
        f"{cpu * 1e6:.0f} us of log CPU per entry; get-sth {sth_rate:.0f}/s, "
        f"{sth_cpu * 1e6:.0f} us per request (the database server's CPU not counted)"
    )


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
    parser.add_argument("--runs", type=int, default=1, help="submission runs, each on a new log")
    parser.add_argument(
        "--read-probe", action="store_true", help="get-sth latency during the submissions"
    )
    parser.add_argument(
        "--callgrind",
        type=int,
        default=0,
        metavar="N",
        help="instructions per request over N requests, the log under callgrind (SQLite)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if args.callgrind:
            callgrind(base / "callgrind", args.callgrind, args.threads)
        if args.submissions:
            runs = []
            for i in range(args.runs):
                with fresh_database(args.db, base, f"ct{i}.db", prefix="acmekit_ctbench") as url:
                    run = submissions(
                        base / f"run{i}",
                        args.submissions,
                        args.threads,
                        args.close,
                        url,
                        args.read_probe,
                    )
                    runs.append(run)
            least_flattering(runs)
        if args.entries:
            with fresh_database(args.db, base, "tree.db", prefix="acmekit_ctbench") as url:
                tree(url, args.entries, args.batch)


if __name__ == "__main__":
    main()

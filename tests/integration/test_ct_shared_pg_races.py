"""Several `acmekit ct` processes on one PostgreSQL database, attacked from outside: the
same entries submitted to every process at once, the sequencer killed (SIGKILL) while
submissions go on, and processes with their own state directories started together on a
fresh database. What must hold (RFC 6962 §3, §4; the issue's "one log"): one SCT per
entry, whichever process answers; one log key; every entry in the tree once and within
the maximum merge delay of its SCT's timestamp; the heads every process serves signed by
that key and consistent with each other."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.ct import merkle
from acmekit.ct.schema import leases
from acmekit.database import create_engine
from acmekit.protocol import ct
from acmekit_testkit.ctlog import (
    RunningLog,
    ca_hierarchy,
    chain_json,
    ct_log_argv,
    der,
    leaf_certificate,
    started_log,
)
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.processes import log_tail, logged_process, wait_until
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.postgres

MMD = 1.0  # seconds: the log's maximum merge delay in these tests


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def log_key(log: RunningLog) -> ec.EllipticCurvePublicKey:
    (info,) = ct.LogList.loads(log.log_list.read_text()).logs
    return info.key


def sth_of(log: RunningLog) -> ct.SignedTreeHead:
    return ct.SignedTreeHead.from_json(get(log.url + "ct/v1/get-sth"))


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1's MTH, written out as the RFC defines it (recursion on the largest
    power of two below n), apart from the log's own tree code."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


@dataclass(frozen=True)
class Submission:
    """A chain to log and the SignedEntry its SCT must cover."""

    path: str  # "add-chain" or "add-pre-chain"
    body: dict[str, Any]
    entry: ct.SignedEntry


def submissions(issuer: Any, prefix: str, n: int) -> list[Submission]:
    """`n` certificates and `n` precertificates (RFC 6962 §3.1, §3.2)."""
    inter = issuer.intermediate_cert
    out = []
    for i in range(n):
        cert = leaf_certificate(issuer, f"{prefix}{i}.example")
        out.append(
            Submission("add-chain", chain_json([cert, inter]), ct.SignedEntry.x509(der(cert)))
        )
        pre = leaf_certificate(issuer, f"{prefix}-pre{i}.example", precert=True)
        entry = ct.SignedEntry.precert(ct.precert_entry(pre, inter))
        out.append(Submission("add-pre-chain", chain_json([pre, inter]), entry))
    return out


def leaf_hash(sct: ct.SignedCertificateTimestamp, entry: ct.SignedEntry) -> bytes:
    """The Merkle leaf hash of the entry an SCT promises (§3.4: the TimestampedEntry
    carries the SCT's timestamp and extensions)."""
    return merkle.leaf_hash(ct.signed_leaf(sct.timestamp, entry.encode(), sct.extensions))


def proved(log: RunningLog, h: bytes, sth: ct.SignedTreeHead) -> int:
    """The leaf index get-proof-by-hash gives for `h` in `sth`'s tree, its audit path
    checked against `sth`'s root (RFC 9162 §2.1.3.2)."""
    size = sth.head.tree_size
    doc = get(f"{log.url}ct/v1/get-proof-by-hash?hash={quote(ct.b64(h))}&tree_size={size}")
    path = [ct.unb64(p) for p in doc["audit_path"]]
    index = int(doc["leaf_index"])
    assert merkle.verify_inclusion(h, index, size, path, sth.head.root_hash)
    return index


def all_leaves(log: RunningLog, size: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < size:
        doc = get(f"{log.url}ct/v1/get-entries?start={len(out)}&end={size - 1}")
        out += [ct.unb64(e["leaf_input"]) for e in doc["entries"]]
    return out


@pytest.fixture
def shared_db() -> Iterator[str]:
    require_postgres_or_skip()
    with fresh_postgres_database("acmekit_ctrace") as url:
        yield url


def start_logs(stack: ExitStack, tmp: Path, states: Sequence[Path], url: str) -> list[RunningLog]:
    """`acmekit ct` processes, all started before any is waited for."""
    roots = tmp / "ca" / "root.pem"
    outs = [tmp / f"p{i}.log" for i in range(len(states))]
    procs = [
        stack.enter_context(logged_process(ct_log_argv(s, roots, db=url, mmd=MMD), out))
        for s, out in zip(states, outs, strict=True)
    ]
    return [started_log(p, s, o) for p, s, o in zip(procs, states, outs, strict=True)]


def test_one_entry_sent_to_every_process_at_once_gets_one_sct(
    tmp_path: Path, shared_db: str
) -> None:
    """Each chain (add-chain and add-pre-chain) is sent three times to each of three
    processes, the nine requests released together: all nine answers are one SCT
    (timestamp, leaf index, signature), it verifies against the log's key, the entry is
    in the tree once, at that index, provable from every process."""
    issuer = ca_hierarchy(tmp_path / "ca")
    state = tmp_path / "log"
    subs = submissions(issuer, "same", 16)
    with ExitStack() as stack:
        logs = start_logs(stack, tmp_path, [state] * 3, shared_db)
        key = log_key(logs[0])
        # half the requests bring the root as well: the entry, and so its SCT, is the same
        fan = [(s, log, r) for s in subs for log in logs for r in range(3)]
        root = der(issuer.root_cert)
        barriers = {id(s): threading.Barrier(9, timeout=30) for s in subs}

        def submit(job: tuple[Submission, RunningLog, int]) -> tuple[Submission, dict[str, Any]]:
            sub, log, r = job
            body = sub.body
            if r == 1:
                body = {"chain": [*body["chain"], ct.b64(root)]}
            barriers[id(sub)].wait()
            return sub, post(log.url + "ct/v1/" + sub.path, body)

        with ThreadPoolExecutor(27) as pool:
            answers = list(pool.map(submit, fan))
        by_entry: dict[int, list[dict[str, Any]]] = {}
        for sub, doc in answers:
            by_entry.setdefault(id(sub), []).append(doc)
        indices = []
        for sub in subs:
            docs = by_entry[id(sub)]
            assert all(d == docs[0] for d in docs), docs
            sct = ct.SignedCertificateTimestamp.from_json(docs[0])
            assert ct.verify_sct(sct, sub.entry, key)
            indices.append(ct.leaf_index_of(sct.extensions))
        assert sorted(i for i in indices if i is not None) == list(range(len(subs)))

        wait_until(
            "every process serves the whole tree",
            lambda: all(sth_of(log).head.tree_size == len(subs) for log in logs),
            30,
            [log.output for log in logs],
        )
        heads = [sth_of(log) for log in logs]
        assert all(h.verify(key) for h in heads)
        inter = der(issuer.intermediate_cert)
        for log in logs:  # static-ct-api's issuer/<sha256>, stored once, served by each
            with urllib.request.urlopen(
                f"{log.url}issuer/{hashlib.sha256(inter).hexdigest()}", timeout=10
            ) as resp:
                assert resp.read() == inter
        leaves = all_leaves(logs[1], len(subs))
        assert mth(leaves) == heads[0].head.root_hash
        for sub, index in zip(subs, indices, strict=True):
            sct = ct.SignedCertificateTimestamp.from_json(by_entry[id(sub)][0])
            h = leaf_hash(sct, sub.entry)
            assert [merkle.leaf_hash(leaf) for leaf in leaves].count(h) == 1
            assert {proved(log, h, head) for log, head in zip(logs, heads, strict=True)} == {index}


@dataclass
class Seen:
    """What the watcher saw: every distinct head, with the process that served it."""

    heads: dict[tuple[int, bytes], tuple[ct.SignedTreeHead, RunningLog]]
    accepted: list[tuple[Submission, ct.SignedCertificateTimestamp]]


def test_the_sequencer_killed_mid_stream_hands_over_within_the_mmd(
    tmp_path: Path, shared_db: str
) -> None:
    """Submissions go to three processes while the one holding the sequencer lease is
    killed with SIGKILL: another takes the lease, every SCT any process gave (the dead
    one's included) is in the tree with a head signed within the MMD of the SCT's
    timestamp, provable from each survivor, and the heads served by all processes are
    consistent with each other (get-sth-consistency, asked of another process)."""
    issuer = ca_hierarchy(tmp_path / "ca")
    state = tmp_path / "log"
    subs = submissions(issuer, "flow", 150)
    random.Random(7).shuffle(subs)
    engine = create_engine(shared_db)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        logs = start_logs(stack, tmp_path, [state] * 3, shared_db)
        key = log_key(logs[0])
        seen = Seen({}, [])
        stop = threading.Event()
        live = list(logs)

        def watch() -> None:
            while not stop.is_set():
                for log in list(live):
                    try:
                        sth = sth_of(log)
                    except OSError:
                        continue
                    seen.heads.setdefault((sth.head.tree_size, sth.head.root_hash), (sth, log))
                time.sleep(0.01)

        fed = threading.Event()  # set: stop submitting

        def feed(part: list[Submission], n: int) -> None:
            for i, sub in enumerate(part):
                if fed.is_set():
                    return
                log = logs[(i + n) % len(logs)]
                try:
                    doc = post(log.url + "ct/v1/" + sub.path, sub.body)
                except (OSError, urllib.error.HTTPError):
                    continue  # the killed process: the submission goes unanswered
                seen.accepted.append((sub, ct.SignedCertificateTimestamp.from_json(doc)))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        feeders = [threading.Thread(target=feed, args=(subs[n::2], n)) for n in range(2)]
        watcher.start()
        for t in feeders:
            t.start()
        try:
            wait_until("some entries sequenced", lambda: len(seen.heads) > 2, 30, [])
            with engine.connect() as conn:
                holder = conn.execute(sa.select(leases.c.holder)).scalar_one()
            by_pid = {log.process.pid: log for log in logs}
            dead = by_pid[int(holder.split("-")[0])]
            live.remove(dead)
            dead.process.kill()  # SIGKILL: no release of the lease, no goodbye
            dead.process.wait(10)
            killed_ms = time.time_ns() // 1_000_000
            time.sleep(3 * MMD)  # submissions go on past the lease's end and the MMD
            fed.set()
            for t in feeders:
                t.join(60)
            wanted = 1 + max(ct.leaf_index_of(s.extensions) or 0 for _, s in seen.accepted)
            wait_until(
                "the survivors sequence every accepted entry",
                lambda: all(sth_of(log).head.tree_size >= wanted for log in live),
                30,
                [log.output for log in logs],
            )
            time.sleep(3 * 0.1)  # the watcher sees the last heads
        finally:
            fed.set()
            stop.set()
            watcher.join(10)
            for t in feeders:
                t.join(60)
        with engine.connect() as conn:
            new_holder = conn.execute(sa.select(leases.c.holder)).scalar_one()
        assert int(new_holder.split("-")[0]) in {log.process.pid for log in live}

        heads = sorted(seen.heads.values(), key=lambda s: s[0].head.tree_size)
        assert all(sth.verify(key) for sth, _ in heads)
        assert len({sth.head.tree_size for sth, _ in heads}) == len(heads), "a fork"
        final = sth_of(live[0])
        assert final.head.tree_size >= wanted
        for sub, sct in seen.accepted:
            assert ct.verify_sct(sct, sub.entry, key)
            index = ct.leaf_index_of(sct.extensions)
            assert index is not None
            for log in live:
                assert proved(log, leaf_hash(sct, sub.entry), final) == index
            first = next(sth for sth, _ in heads if sth.head.tree_size > index)
            # §3: the entry is in a head signed at most the MMD after its SCT's timestamp
            late = first.head.timestamp - sct.timestamp
            assert late <= MMD * 1000, f"entry {index} merged {late} ms after its SCT"
        stamps = [sct.timestamp for _, sct in seen.accepted]
        assert any(killed_ms - 1000 * MMD < t < killed_ms for t in stamps), "none pending"
        assert any(t > killed_ms + 1000 * MMD for t in stamps), "none after the kill"

        # Every head any process served is consistent with the next and the last, the
        # proof asked of a process other than the one that served the older head.
        for (old, by), (new, _) in zip(heads, [*heads[1:], heads[-1]], strict=True):
            for target in {new, heads[-1][0]}:
                if old.head.tree_size == 0 or old.head.tree_size == target.head.tree_size:
                    continue
                asked = next(log for log in live if log is not by)
                first_size, second_size = old.head.tree_size, target.head.tree_size
                doc = get(
                    f"{asked.url}ct/v1/get-sth-consistency?first={first_size}&second={second_size}"
                )
                proof = [ct.unb64(p) for p in doc["consistency"]]
                assert merkle.verify_consistency(
                    first_size, second_size, proof, old.head.root_hash, target.head.root_hash
                )
        assert mth(all_leaves(live[0], final.head.tree_size)) == final.head.root_hash


def test_processes_with_their_own_keys_starting_together_serve_one_log(
    tmp_path: Path, shared_db: str
) -> None:
    """Three processes, each with its own state directory (so its own key unless the
    operator copied one), start at the same moment on a fresh database: the schema is
    made once, and however the key race ends, the database holds one log: every process
    that serves names one log ID, signs with that key, and any other refuses to start
    and says why (two keys on one tree would give SCTs that verify against neither)."""
    issuer = ca_hierarchy(tmp_path / "ca")
    states = [tmp_path / f"log{i}" for i in range(3)]
    roots = tmp_path / "ca" / "root.pem"
    outs = [tmp_path / f"p{i}.log" for i in range(3)]
    with ExitStack() as stack:
        procs = [
            stack.enter_context(logged_process(ct_log_argv(s, roots, db=shared_db, mmd=MMD), o))
            for s, o in zip(states, outs, strict=True)
        ]
        serving: list[RunningLog] = []
        for proc, state, out in zip(procs, states, outs, strict=True):
            try:
                serving.append(started_log(proc, state, out))
            except RuntimeError:
                assert proc.wait(10) != 0
                assert "not signed by this log's key" in log_tail(out), log_tail(out)
        # Three keys made apart: exactly one of them is the log's.
        assert len(serving) == 1, [log.log_id for log in serving]
        key = log_key(serving[0])
        cert = leaf_certificate(issuer, "own-keys.example")
        body = chain_json([cert, issuer.intermediate_cert])
        answers = [post(log.url + "ct/v1/add-chain", body) for log in serving]
        assert all(a == answers[0] for a in answers)
        sct = ct.SignedCertificateTimestamp.from_json(answers[0])
        assert ct.verify_sct(sct, ct.SignedEntry.x509(der(cert)), key)
        wait_until(
            "the entry sequenced",
            lambda: all(sth_of(log).head.tree_size == 1 for log in serving),
            30,
            outs,
        )
        assert all(sth_of(log).verify(key) for log in serving)


def stalled_holding_the_index_lock(engine: sa.Engine) -> int:
    """Sessions of the log's database idle inside a transaction (a client that began
    one and sends nothing more) while holding an advisory lock (the log's index lock),
    as PostgreSQL sees them."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid"
                " WHERE a.datname = current_database() AND l.locktype = 'advisory'"
                " AND l.granted AND a.state LIKE 'idle in transaction%'"
            )
        ).scalar_one()
    return int(found)


def test_a_process_frozen_inside_a_transaction_does_not_stop_the_log(
    tmp_path: Path, shared_db: str
) -> None:
    """A process that stops answering inside one of its transactions (SIGSTOP here; a
    host that loses power or its network looks the same to PostgreSQL: no FIN, the
    session stays) must not stop the log: the others keep accepting submissions and
    sequence them within a bounded time, once its lease runs out."""
    issuer = ca_hierarchy(tmp_path / "ca")
    state = tmp_path / "log"
    engine = create_engine(shared_db)
    flood = submissions(issuer, "flood", 400)
    after = submissions(issuer, "after", 2)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        a, b = start_logs(stack, tmp_path, [state] * 2, shared_db)
        done = threading.Event()

        def push(part: list[Submission]) -> None:
            for sub in part:
                if done.is_set():
                    return
                try:
                    post(a.url + "ct/v1/" + sub.path, sub.body)
                except OSError:
                    return

        pushers = [threading.Thread(target=push, args=(flood[n::4],)) for n in range(4)]
        for t in pushers:
            t.start()
        caught = False
        try:
            for _ in range(200):
                a.process.send_signal(signal.SIGSTOP)
                time.sleep(0.3)
                if stalled_holding_the_index_lock(engine):
                    caught = True
                    break
                a.process.send_signal(signal.SIGCONT)
                time.sleep(0.05)
            assert caught, "never froze holding the index lock"
            started = time.monotonic()
            for sub in after:
                doc = post(b.url + "ct/v1/" + sub.path, sub.body)
            index = ct.leaf_index_of(ct.SignedCertificateTimestamp.from_json(doc).extensions)
            assert index is not None
            wait_until(
                "the live process sequences while the other is frozen",
                lambda: sth_of(b).head.tree_size > index,
                20,
                [b.output],
            )
            # bounded: the frozen session goes, then the lease lapses, then one pass
            assert time.monotonic() - started < 15
        finally:
            done.set()
            a.process.send_signal(signal.SIGCONT)
            for t in pushers:
                t.join(30)
        # Thawed, the process finds its session gone and carries on with a new one.
        late = submissions(issuer, "thawed", 1)[0]

        def accepted() -> bool:
            try:
                post(a.url + "ct/v1/" + late.path, late.body)
            except urllib.error.HTTPError as exc:
                assert exc.code == 503, exc.read()  # its dropped session: try again
                return False
            return True

        wait_until("the thawed process accepts again", accepted, 20, [a.output])
        assert post(b.url + "ct/v1/" + late.path, late.body) == post(
            a.url + "ct/v1/" + late.path, late.body
        )


def checkpoint(log: RunningLog) -> str:
    with urllib.request.urlopen(log.url + "checkpoint", timeout=10) as resp:
        return str(resp.read().decode())


def test_processes_of_one_log_serve_one_checkpoint_origin(tmp_path: Path, shared_db: str) -> None:
    """static-ct-api names a log by its origin (the submission prefix without its
    scheme) in every checkpoint, and a tiled client checks it: the processes of one log,
    each on its own address, serve the same checkpoint under the URL given them, and
    their log lists name that URL."""
    issuer = ca_hierarchy(tmp_path / "ca")
    state, roots = tmp_path / "log", tmp_path / "ca" / "root.pem"
    public = "https://ct.example/shared/"
    with ExitStack() as stack:
        outs = [tmp_path / f"p{i}.log" for i in range(2)]
        argv = [ct_log_argv(state, roots, db=shared_db, mmd=MMD, extra=["--url", public])]
        argv.append(ct_log_argv(state, roots, db=shared_db, mmd=MMD, extra=["--url", public]))
        procs = [stack.enter_context(logged_process(a, o)) for a, o in zip(argv, outs, strict=True)]
        logs = [started_log(p, state, o) for p, o in zip(procs, outs, strict=True)]
        cert = leaf_certificate(issuer, "origin.example")
        post(logs[0].url + "ct/v1/add-chain", chain_json([cert, issuer.intermediate_cert]))
        wait_until(
            "both serve the entry",
            lambda: all(sth_of(log).head.tree_size == 1 for log in logs),
            30,
            outs,
        )
        notes = [checkpoint(log) for log in logs]
        assert notes[0] == notes[1]
        assert notes[0].splitlines()[0] == "ct.example/shared"
        (info,) = ct.LogList.loads(logs[1].log_list.read_text()).logs
        assert info.url == public

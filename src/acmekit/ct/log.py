"""The log's work, apart from HTTP: accepting a chain (RFC 6962 §4.1, §4.2), signing its
SCT, sequencing, and the proofs and entries readers ask for (§4.3-§4.8).

A submission is checked (each certificate signed by the next, the chain ending in an
accepted root, the poison present exactly for add-pre-chain, notAfter inside the temporal
shard), then looked up by identity: an entry submitted before gets its first SCT back.
A new one is signed and stored unsequenced; the sequencer (one process at a time, by
lease) places pending entries in the tree well within the maximum merge delay.

Problems with the request raise `BadRequest`/`NotFound`, which the HTTP layer turns
into 4xx JSON answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import queue
import secrets
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, ParamSpec, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import SignatureAlgorithmOID

from acmekit.ct import merkle
from acmekit.ct.store import CtStore, Leaf, Pending, StoredEntry, WriterClosed
from acmekit.files import atomic_write
from acmekit.protocol import ct
from acmekit.protocol.ct import SignedCertificateTimestamp, SignedEntry, SignedTreeHead, TreeHead

log = logging.getLogger(__name__)

KEY_FILE = "ct-log-key.pem"
MAX_CHAIN = 10  # certificates in one submission
_BAD_CERTIFICATE = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)
T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")
MAX_GET_ENTRIES = 1000  # entries per get-entries answer (§4.6 lets a log return fewer)
MAX_KNOWN_ISSUERS = 1000  # checked issuer chains remembered (a CA has a handful)
# Signature algorithms checked with the issuer's key object kept (RFC 5758 §3.2, RFC
# 4055 §5); any other goes through cryptography's verify_directly_issued_by.
_ECDSA: dict[x509.ObjectIdentifier, ec.ECDSA] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: ec.ECDSA(hashes.SHA256()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: ec.ECDSA(hashes.SHA384()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: ec.ECDSA(hashes.SHA512()),
}
_RSA_HASHES: dict[x509.ObjectIdentifier, hashes.HashAlgorithm] = {
    SignatureAlgorithmOID.RSA_WITH_SHA256: hashes.SHA256(),
    SignatureAlgorithmOID.RSA_WITH_SHA384: hashes.SHA384(),
    SignatureAlgorithmOID.RSA_WITH_SHA512: hashes.SHA512(),
}


class CtRequestError(Exception):
    status = 400
    code = "bad_request"


class BadRequest(CtRequestError):
    pass


class NotFound(CtRequestError):
    status = 404
    code = "not_found"


class Unavailable(CtRequestError):
    status = 503
    code = "unavailable"


@dataclass(frozen=True)
class LogSettings:
    roots: tuple[x509.Certificate, ...]
    mmd: float = 60.0
    not_after_start: datetime | None = None
    not_after_end: datetime | None = None
    batch: int = 4096


@dataclass(frozen=True)
class Issuers:
    """What follows a submission's first certificate, checked: the DER stored with the
    entry (the chain as submitted after the first, and the root the log added, §4.1),
    and what checking the first certificate needs of its issuer, `first`, worked out
    once (None: the first certificate is itself an accepted root)."""

    der: tuple[bytes, ...]
    first: x509.Certificate | None
    subject: bytes  # the issuer's subject Name, DER: the first certificate's issuer
    key: CertificatePublicKeyTypes | None
    key_hash: bytes  # §3.2 issuer_key_hash: SHA-256 of the issuer's SubjectPublicKeyInfo
    precert_signing: bool  # the issuer is a Precertificate Signing Certificate (§3.1)

    @classmethod
    def of(cls, first: x509.Certificate | None, der: tuple[bytes, ...]) -> Issuers:
        if first is None:
            return cls(der, None, b"", None, b"", False)
        return cls(
            der,
            first,
            ct.TbsParts.parse(first.tbs_certificate_bytes).subject,
            first.public_key(),
            ct.issuer_key_hash(first),
            ct.is_precert_signing_certificate(first),
        )


def _load(i: int, der: bytes) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = cert.extensions  # parsed lazily: a bad one must be the client's 400
    except _BAD_CERTIFICATE as exc:
        raise BadRequest(f"chain[{i}] is not a DER certificate: {exc}") from None
    return cert


def _tbs_parts(der: bytes) -> ct.TbsParts:
    """The TBS of a certificate cryptography has parsed (so strictly DER), as submitted."""
    try:
        return ct.TbsParts.parse(ct.tbs_certificate_der(der))
    except ct.CtError as exc:
        raise BadRequest(f"chain[0]: {exc}") from None


def load_or_create_key(state_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The log's ECDSA P-256 key, made on first start (mode 0600). Made under a temporary
    name and linked into place, which fails if the file exists: of several processes
    starting at once on one state directory, all end up with the first one's key."""
    path = state_dir / KEY_FILE
    if not path.exists():
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = state_dir / f".{KEY_FILE}.{secrets.token_hex(6)}"
        atomic_write(tmp, pem, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use that one
        finally:
            tmp.unlink()
    loaded = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
        raise ValueError(f"{path} is not an ECDSA P-256 key")
    return loaded


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class CtLog:
    def __init__(self, store: CtStore, key: ec.EllipticCurvePrivateKey, settings: LogSettings):
        self.store = store
        self.key = key
        self.settings = settings
        self.log_id = ct.log_id(key.public_key())
        self._log_id_b64 = base64.b64encode(self.log_id)
        self.roots = {r.public_bytes(serialization.Encoding.DER): r for r in settings.roots}
        self._issuers: dict[tuple[bytes, ...], Issuers] = {}
        self.holder = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._verified: set[tuple[bytes, bytes]] = set()
        self._writer = GroupCommit(store.add_many)
        self._async_writer = AsyncGroupCommit(store.add_many_async)
        store.end_stalled_sessions(self.lease_ms)
        store.init_tree(self.sign_head, now_ms())
        self._check_key_is_the_trees()
        self.head = PublishedHead()

    def _check_key_is_the_trees(self) -> None:
        """Refuse to serve a database whose tree head another key signed. Processes of
        one log share its database and its key; one started with a key of its own (a
        state directory of its own, with no key copied in) would sign heads and SCTs
        under a second log ID over the same tree, and answer a resubmission with an SCT
        another key signed, which verifies against neither (RFC 6962 §3.2: the log ID
        is the key's hash). The first head is stored under the index lock, so of
        processes starting together the first one's key wins and the others stop here."""
        stored = self.store.sth()
        if stored is not None and not stored.verify(self.key.public_key()):
            raise ValueError(
                f"the database's tree head is not signed by this log's key ({KEY_FILE}): "
                "the database belongs to another log; processes sharing a database share "
                f"its key (copy {KEY_FILE} from a process of that log into this state "
                "directory, in place of the one here)"
            )

    def sign_head(self, head: TreeHead) -> SignedTreeHead:
        return ct.sign_tree_head(self.key, head)

    # ----- submissions (§4.1, §4.2) -----

    def add_chain(self, chain_der: Sequence[bytes], precert: bool) -> SignedCertificateTimestamp:
        """Check, store and answer a submission, from any thread (blocks until durable)."""
        return self._answer(self._writer.submit(self.prepare(chain_der, precert)))

    async def add_chain_body_async(self, chain_der: Sequence[bytes], precert: bool) -> bytes:
        """The same from the event loop, answered as add-chain's JSON body (§4.1): what
        `json.dumps(sct.to_json())` gives, rendered from the stored entry directly. The
        checks run here; each batch's transaction, with its SCT signatures and its sync,
        on the store's writer thread (one hop a batch, not one a request), while the
        loop goes on serving."""
        pending = self.prepare(chain_der, precert)
        try:
            found = await self._async_writer.submit(pending)
        except WriterClosed:
            raise Unavailable("the log is stopping") from None
        return self._sct_body(found)

    def prepare(self, chain_der: Sequence[bytes], precert: bool) -> Pending:
        """The checks (§4.1, §4.2) and the entry, waiting for its leaf index."""
        tbs, issuers = self._check_chain(chain_der, precert)
        if precert:
            if issuers.precert_signing:
                raise BadRequest("precertificate signing certificates are not supported")
            entry = SignedEntry.precert(ct.PrecertEntry(issuers.key_hash, tbs.stripped()))
            extra = ct.precert_chain_extra_data(chain_der[0], issuers.der)
        else:
            entry = SignedEntry.x509(chain_der[0])
            extra = ct.x509_chain_extra_data(issuers.der)
        encoded = entry.encode()  # once: the identity, the SCT and the leaf share it
        identity = hashlib.sha256(encoded).digest()  # SignedEntry.identity()
        return Pending(identity, self._sealer(identity, encoded, extra), issuers.der)

    def _answer(self, found: StoredEntry) -> SignedCertificateTimestamp:
        signature = ct.DigitallySigned.decode(found.sct_signature)
        extensions = ct.leaf_extensions(found.leaf_input)
        return SignedCertificateTimestamp(self.log_id, found.timestamp, signature, extensions)

    def _sct_body(self, found: StoredEntry) -> bytes:
        """`json.dumps(self._answer(found).to_json()).encode()`, without the objects in
        between: the keys in to_json's order, json.dumps's separators, base64 as `b64`.
        The stored signature is checked to be a `DigitallySigned` as `_answer` checks it."""
        signature = found.sct_signature
        if len(signature) < 4 or int.from_bytes(signature[2:4], "big") != len(signature) - 4:
            raise ct.CtError("the stored SCT signature is not a DigitallySigned")
        extensions = ct.leaf_extensions(found.leaf_input)
        return b"".join(
            (
                b'{"sct_version": %d, "id": "' % ct.Version.V1,
                self._log_id_b64,
                b'", "timestamp": %d, "extensions": "' % found.timestamp,
                base64.b64encode(extensions),
                b'", "signature": "',
                base64.b64encode(signature),
                b'"}',
            )
        )

    def _sealer(self, identity: bytes, entry: bytes, extra: bytes) -> Callable[[int], StoredEntry]:
        """What the writer calls once it has given the entry (`entry`: the SignedEntry
        encoded) its leaf index: the SCT is signed over the index (static-ct-api's
        `leaf_index` extension), and the Merkle leaf carries the same extensions (RFC
        6962 §3.4: the TimestampedEntry's are the SCT's). The leaf is also the input
        the SCT's signature covers (`ct.signed_leaf`): built once for both."""

        def seal(index: int) -> StoredEntry:
            stamp = now_ms()
            leaf = ct.signed_leaf(stamp, entry, ct.leaf_index_extension(index))
            return StoredEntry(
                identity,
                merkle.leaf_hash(leaf),
                stamp,
                leaf,
                extra,
                ct.sign(self.key, leaf).encode(),
                index,
            )

        return seal

    def _check_chain(
        self, chain_der: Sequence[bytes], precert: bool
    ) -> tuple[ct.TbsParts, Issuers]:
        """The first certificate's TBS cut into fields, and what follows it, all
        checked. The certificates after the first are checked once and then known by
        their DER (`_issuers`), so a submission from a known CA costs one certificate
        parsed and one signature verified."""
        if not chain_der:
            raise BadRequest("the chain is empty")
        if len(chain_der) > MAX_CHAIN:
            raise BadRequest(f"the chain has more than {MAX_CHAIN} certificates")
        known = self._issuers.get(tuple(chain_der[1:])) if len(chain_der) > 1 else None
        if known is None:
            return self._check_new_chain(chain_der, precert)
        # The order of the checks below is _check_new_chain's for the first certificate.
        leaf = _load(0, chain_der[0])
        self._check_poison(leaf, precert)
        tbs = _tbs_parts(chain_der[0])
        self._check_first_signed(leaf, tbs, known)
        self._check_shard(leaf)
        return tbs, known

    def _check_new_chain(
        self, chain_der: Sequence[bytes], precert: bool
    ) -> tuple[ct.TbsParts, Issuers]:
        chain = [_load(i, der) for i, der in enumerate(chain_der)]
        leaf = chain[0]
        self._check_poison(leaf, precert)
        for i, (child, parent) in enumerate(itertools.pairwise(chain)):
            # §3.1 asks for a valid signature chain: each issuer a CA (RFC 5280 §6.1.4
            # (k)), or any subscriber could log what its own key signed. A root the log
            # accepts is taken as it is (old roots lack basicConstraints).
            trusted = chain_der[i + 1] in self.roots
            if not trusted and not ct.is_ca(parent):
                raise BadRequest(f"chain[{i + 1}] is not a CA certificate (basicConstraints)")
            self._check_signed(child, parent, i, chain_der[i], chain_der[i + 1])
        added: tuple[bytes, ...] = ()
        if chain_der[-1] not in self.roots:
            found = self._root_for(chain[-1], chain_der[-1])
            if found is None:
                raise BadRequest("the chain does not end in an accepted root")
            added = (found,)  # §4.1: the log adds the root to the stored chain
            chain.append(self.roots[found])
        if precert and len(chain) < 2:
            raise BadRequest("add-pre-chain: a precertificate needs its issuer in the chain")
        self._check_shard(leaf)
        issuers = Issuers.of(chain[1] if len(chain) > 1 else None, (*chain_der[1:], *added))
        if len(chain_der) > 1:  # the same issuers again: only the first certificate to check
            if len(self._issuers) >= MAX_KNOWN_ISSUERS:
                self._issuers.clear()
            self._issuers[tuple(chain_der[1:])] = issuers
        return _tbs_parts(chain_der[0]), issuers

    def _check_poison(self, leaf: x509.Certificate, precert: bool) -> None:
        poisoned = ct.is_precertificate(leaf)
        if precert and not poisoned:
            raise BadRequest("add-pre-chain: the certificate has no CT poison extension")
        if precert and not leaf.extensions.get_extension_for_oid(ct.POISON_OID).critical:
            # §3.1: the poison is critical, so that no client accepts a precertificate
            raise BadRequest("add-pre-chain: the CT poison extension is not critical")
        if not precert and poisoned:
            raise BadRequest("add-chain: the certificate is a precertificate (CT poison)")

    def _check_first_signed(
        self, leaf: x509.Certificate, tbs: ct.TbsParts, issuers: Issuers
    ) -> None:
        """chain[1] signed chain[0], as `verify_directly_issued_by` checks it (the names
        compared as DER, then the signature), with chain[1]'s key loaded once: loading
        it again each time cost about 30% of the verification."""
        if tbs.issuer != issuers.subject:
            raise BadRequest("chain[0] is not signed by chain[1]: its issuer is not chain[1]")
        key, oid = issuers.key, leaf.signature_algorithm_oid
        try:
            if isinstance(key, ec.EllipticCurvePublicKey) and oid in _ECDSA:
                key.verify(leaf.signature, tbs.der, _ECDSA[oid])
            elif isinstance(key, rsa.RSAPublicKey) and oid in _RSA_HASHES:
                key.verify(leaf.signature, tbs.der, padding.PKCS1v15(), _RSA_HASHES[oid])
            elif issuers.first is not None:  # other algorithms (RSA-PSS, EdDSA): as before
                leaf.verify_directly_issued_by(issuers.first)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise BadRequest(f"chain[0] is not signed by chain[1]: {exc}") from None

    def _check_signed(
        self,
        child: x509.Certificate,
        parent: x509.Certificate,
        i: int,
        child_der: bytes,
        parent_der: bytes,
    ) -> None:
        """`parent` signed `child`. A verified (CA certificate, issuer) pair is
        remembered, keyed by the SHA-256 of the DER: a chain's certificates are
        remembered whole (`_issuers`), but the same intermediate may come with others."""
        pair = (hashlib.sha256(child_der).digest(), hashlib.sha256(parent_der).digest())
        if pair in self._verified:
            return
        try:
            child.verify_directly_issued_by(parent)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise BadRequest(f"chain[{i}] is not signed by chain[{i + 1}]: {exc}") from None
        if ct.is_ca(child):
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified.add(pair)

    def _root_for(self, cert: x509.Certificate, der: bytes) -> bytes | None:
        """The DER of the accepted root that signed `cert`, if one did."""
        for root_der, root in self.roots.items():
            if root.subject != cert.issuer:
                continue
            try:
                self._check_signed(cert, root, 0, der, root_der)
            except BadRequest:
                continue
            return root_der
        return None

    def _check_shard(self, leaf: x509.Certificate) -> None:
        start, end = self.settings.not_after_start, self.settings.not_after_end
        not_after = leaf.not_valid_after_utc
        if start is not None and not_after < start:
            raise BadRequest(f"notAfter {not_after:%Y-%m-%d} is before this log's shard")
        if end is not None and not_after >= end:
            raise BadRequest(f"notAfter {not_after:%Y-%m-%d} is after this log's shard")

    # ----- reads (§4.3-§4.8) -----

    def sth(self) -> SignedTreeHead:
        found = self.store.sth()
        if found is None:
            raise Unavailable("the log has no tree head yet")
        return found

    def refresh_head(self) -> bytes:
        """Read the stored tree head into `head` (the get-sth answer); its JSON."""
        return self.head.publish(self.sth())

    def sth_answer(self) -> bytes | None:
        """get-sth's body from memory, or None once it is older than two sequencer
        passes (then `refresh_head` reads the store). Each pass of the sequencer loop
        refreshes it, in every process, so a head is served at most about `interval`
        after it is stored (RFC 6962 §4.3 asks for a head, not the newest one)."""
        return self.head.fresh(2 * self.interval)

    def consistency(self, first: int, second: int) -> list[bytes]:
        size = self.sth().head.tree_size
        if not 0 <= first <= second:
            raise BadRequest(f"first ({first}) must be at most second ({second})")
        if second > size:
            raise BadRequest(f"second ({second}) is beyond the tree ({size})")
        return self.store.range_hashes(merkle.consistency_ranges(first, second))

    def proof_by_hash(self, leaf_hash: bytes, tree_size: int) -> tuple[int, list[bytes]]:
        self._check_size(tree_size)
        index = self.store.leaf_index(leaf_hash, tree_size)
        if index is None:
            raise NotFound(f"no leaf with that hash in the tree of size {tree_size}")
        return index, self.store.range_hashes(merkle.inclusion_ranges(index, tree_size))

    def entries(self, start: int, end: int) -> list[Leaf]:
        size = self.sth().head.tree_size
        if start < 0 or end < start:
            raise BadRequest(f"start ({start}) must be at least 0 and at most end ({end})")
        if start >= size:
            raise BadRequest(f"start ({start}) is beyond the tree ({size} entries)")
        end = min(end, size - 1, start + MAX_GET_ENTRIES - 1)
        return self.store.leaves(start, end)

    def entry_and_proof(self, index: int, tree_size: int) -> tuple[Leaf, list[bytes]]:
        self._check_size(tree_size)
        if not 0 <= index < tree_size:
            raise BadRequest(f"leaf_index ({index}) is not in a tree of {tree_size}")
        leaves = self.store.leaves(index, index)
        return leaves[0], self.store.range_hashes(merkle.inclusion_ranges(index, tree_size))

    def _check_size(self, tree_size: int) -> None:
        size = self.sth().head.tree_size
        if not 0 < tree_size <= size:
            raise BadRequest(f"tree_size ({tree_size}) must be in 1..{size}")

    # ----- sequencing -----

    @property
    def interval(self) -> float:
        """How often the sequencer looks: a small part of the MMD, and at most a second."""
        return max(0.05, min(1.0, self.settings.mmd / 10))

    @property
    def lease_ms(self) -> int:
        """How long a silent sequencer keeps the lease: a third of the MMD (at most 30 s,
        and three passes at least, as the holder renews it on each). When the holder
        dies, another process takes over at the lease's end plus one pass and places
        what the dead one left: that must still fall within the MMD of the SCTs it gave
        (RFC 6962 §3). A floor of 2 s did not, for an MMD under about 2.3 s (`--mmd`
        takes 0.1 s on): entries merged 2 s after their SCT with an MMD of 1 s."""
        return int(min(30.0, max(self.settings.mmd / 3, 3 * self.interval)) * 1000)

    def sequence_once(self) -> int:
        """One pass: hold the lease, then place what is pending; then read the head
        (signed here, or by the process holding the lease) for get-sth to serve.
        Entries placed."""
        held = self.store.take_lease(self.holder, now_ms(), self.lease_ms)
        placed = self._sequence() if held else 0
        self.refresh_head()
        return placed

    def _sequence(self) -> int:
        placed = 0
        refresh = int(self.settings.mmd * 1000 / 2)  # heads stay fresher than the MMD
        while True:
            n = self.store.sequence(self.sign_head, now_ms(), self.settings.batch, refresh)
            placed += n
            if n < self.settings.batch:
                return placed

    async def run_sequencer(self) -> None:
        while True:
            try:
                placed = await on_daemon_thread(self.sequence_once, "ct-sequencer")
                if placed:
                    log.info("sequenced %d entries", placed)
            except Exception:  # a database outage: try again on the next pass
                log.warning("sequencing failed; retrying", exc_info=True)
            await asyncio.sleep(self.interval)

    def release(self) -> None:
        self.store.release_lease(self.holder)

    # ----- the log list -----

    def log_info(self, url: str, operator: str, description: str) -> ct.LogInfo:
        return ct.LogInfo(
            description=description,
            key=self.key.public_key(),
            url=url,
            mmd=max(1, round(self.settings.mmd)),
            operator=operator,
            temporal_start=self.settings.not_after_start,
            temporal_end=self.settings.not_after_end,
            usable_since=datetime.now(UTC),
        )


async def on_daemon_thread(fn: Callable[[], R], name: str) -> R:
    """`fn()` on a daemon thread of its own, not the loop's executor, whose threads
    `asyncio.run` joins at exit without a bound: a call stuck in the database (a lock
    wait, a half-open connection) must not keep a stopping process alive. Cancelling
    the waiter leaves the call to end (or not) on its thread."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[R] = loop.create_future()

    def settle(fill: Callable[[], None]) -> None:
        if not done.done():  # else its waiter was cancelled
            fill()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:
            fill = functools.partial(done.set_exception, exc)
        else:
            fill = functools.partial(done.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop ended first
            loop.call_soon_threadsafe(settle, fill)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await done


class DaemonThreads(Executor):
    """An executor of up to `max_workers` daemon threads, started as work needs them, for
    the log's reads (`CtApp`). Not the loop's default executor: `asyncio.run` joins its
    threads at exit without a bound, and so does the interpreter, so a read stuck in the
    database (a lock another session holds, a half-open connection) kept a stopping
    process alive after everything else had let go (the pattern of `on_daemon_thread`,
    with the threads kept). `shutdown` never waits: a read still running is left on its
    thread, and the process exits without it."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # a release per worker waiting for a job
        self._lock = threading.Lock()
        self._max = max_workers
        self._name = name
        self._started = 0
        self._closed = False
        # The workers hold the queue, not the executor: once it is dropped (a test's
        # app) or shut down, each is handed a None and ends.
        self._stop = weakref.finalize(self, _stop_workers, self._jobs, max_workers)

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        done: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.put(
                functools.partial(_run_into, done, functools.partial(fn, *args, **kwargs))
            )
            if not self._idle.acquire(blocking=False) and self._started < self._max:
                self._started += 1
                name = f"{self._name}-{self._started}"
                worker = threading.Thread(
                    target=_work, args=(self._jobs, self._idle), name=name, daemon=True
                )
                worker.start()
        return done

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more work; idle workers end, a busy one after its job. Never waits (a job
        may be stuck in the database); `wait` and `cancel_futures` are ignored."""
        with self._lock:
            self._closed = True
        self._stop()


def _work(jobs: queue.SimpleQueue[Callable[[], None] | None], idle: threading.Semaphore) -> None:
    while (job := jobs.get()) is not None:
        job()
        del job  # its result is its future's, not this frame's
        idle.release()


def _stop_workers(jobs: queue.SimpleQueue[Callable[[], None] | None], count: int) -> None:
    for _ in range(count):
        jobs.put(None)


def _run_into(done: Future[R], call: Callable[[], R]) -> None:
    """`call()`, its result or error into `done`, unless `done` was cancelled first (its
    waiter gave up: a request cut off at shutdown)."""
    if not done.set_running_or_notify_cancel():
        return
    try:
        result = call()
    except BaseException as exc:
        done.set_exception(exc)
    else:
        done.set_result(result)


class PublishedHead:
    """The signed tree head get-sth serves, kept rendered: answering it is a lookup,
    with no database read, thread hop or signature per request. Replaced whole (one
    attribute store, atomic under the GIL) by whichever thread read the store last."""

    def __init__(self) -> None:
        self._current: tuple[float, SignedTreeHead, bytes] | None = None

    def publish(self, sth: SignedTreeHead) -> bytes:
        current = self._current
        if current is not None and (
            current[1] == sth or current[1].head.timestamp > sth.head.timestamp
        ):
            # The same head: keep its rendering. An older one (a read that started
            # before another thread published a newer head): keep the newer, so that
            # get-sth never goes back.
            sth, body = current[1], current[2]
        else:
            body = json.dumps(sth.to_json()).encode()
        self._current = (time.monotonic(), sth, body)
        return body

    def fresh(self, max_age: float) -> bytes | None:
        current = self._current
        if current is None or time.monotonic() - current[0] > max_age:
            return None
        return current[2]


class GroupCommit(Generic[T, R]):
    """Group commit: submissions that arrive while a batch is being written are written
    together in the next one, in one transaction. No thread of its own: a submitting
    thread that gets the write turn writes everything queued, its own item included,
    and hands each waiter its result; every caller returns only after the transaction
    holding its item has committed (or raises what the write raised)."""

    def __init__(self, write: Callable[[list[T]], Sequence[R]], limit: int = 512) -> None:
        self._write = write
        self._limit = limit
        self._queue: list[tuple[T, Future[R]]] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()

    def submit(self, item: T) -> R:
        done: Future[R] = Future()
        with self._queue_lock:
            self._queue.append((item, done))
        while not done.done():
            with self._turn:
                if done.done():
                    break  # written by the thread that had the turn before us
                with self._queue_lock:
                    batch = self._queue[: self._limit]
                    del self._queue[: self._limit]
                if not batch:
                    continue
                try:
                    results = self._write([i for i, _ in batch])
                except BaseException as exc:
                    for _, waiter in batch:
                        waiter.set_exception(exc)
                else:
                    for (_, waiter), result in zip(batch, results, strict=True):
                        waiter.set_result(result)
        return done.result()


class AsyncGroupCommit(Generic[T, R]):
    """Group commit for submissions on the event loop: items queue on the loop; one
    drain task at a time hands everything queued (up to `limit`) to `write`, which
    writes it off the loop (the store's writer thread), then resolves each waiter. Each
    caller returns only after the transaction holding its item has committed (or raises
    what the write raised). A drain cut off (the loop stopping) fails the waiters it
    holds and those queued: none is answered as if its item were written."""

    def __init__(
        self, write: Callable[[list[T]], Awaitable[Sequence[R]]], limit: int = 512
    ) -> None:
        self._write = write
        self._limit = limit
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._draining = False
        self._task: asyncio.Future[None] | None = None  # the drain task, kept referenced

    async def submit(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if not self._draining:
            self._draining = True
            self._task = asyncio.ensure_future(self._drain())
        return await done

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queue:
                batch = self._queue[: self._limit]
                del self._queue[: self._limit]
                try:
                    results = await self._write([i for i, _ in batch])
                except Exception as exc:
                    _fail(batch, exc)
                else:
                    for (_, waiter), result in zip(batch, results, strict=True):
                        if not waiter.done():  # its request may have been cancelled
                            waiter.set_result(result)
        except BaseException:
            # Cancelled while a batch was out: whether it committed is not known here.
            _fail(batch + self._queue, WriterClosed("the write was cut off"))
            self._queue.clear()
            raise
        finally:
            self._draining = False


def _fail(waiters: Sequence[tuple[object, asyncio.Future[R]]], exc: BaseException) -> None:
    for _, waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)

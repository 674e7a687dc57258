"""Certificate revocation lists (RFC 5280 §5), sharded by serial, served on plain HTTP.

- A certificate's shard is `serial % shards`; its CRL Distribution Point names that
  shard's URL, `BASE/crl/{shard}.crl`, and each shard's CRL carries an Issuing
  Distribution Point with the same URL (§5.2.5), as Let's Encrypt's sharded CRLs do.
- Every CRL is signed by the intermediate that signs subscriber certificates, with
  thisUpdate/nextUpdate, the AKI extension (§5.2.1), a CRL number (§5.2.3) that only
  grows, and per entry a reason code (§5.3.1; left out for `unspecified`, as §5.3.1 asks).
  Entries stay until the certificate expires.
- The signed DER lives in the database with its number: a new CRL is stored only if
  its number is one past the stored one, so processes sharing a database never go
  backwards, and any of them serves the latest. CRLs are remade on a schedule and soon
  after a revocation.
- A revocation only marks its shard dirty (`revoked`): the CA's one rebuilder
  (`AcmeApp`'s, in a thread off the event loop) remakes the dirty shards, so the
  revokeCert answer never waits for a CRL, and revocations that arrive while a shard is
  being remade share its next remaking. The Baseline Requirements (§4.9.7) allow 24
  hours from recording a revocation to publishing the CRL that lists it; ours is the
  time one remaking takes, and the scheduled `refresh` (every `regenerate_every`) is
  the backstop for a shard left dirty (a signing key away, a database outage).
- A CRL reads only its entries' columns (serial, revocation time, reason), never PEM.
- The listener serves what is stored; a shard asked for before any CRL of it is stored
  (before the start's refresh) has its first made in a thread (`CrlPublisher.first`),
  one CRL at a time per process (`_building`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.database import UNAVAILABLE
from acmekit.server.ca import Issuer, sign_crl_with
from acmekit.server.config import CrlSettings
from acmekit.server.lint import Linter
from acmekit.server.records import CertificateRecord, CrlRecord, RevokedEntry
from acmekit.server.signing import SignerUnavailable
from acmekit.server.store import Store

log = logging.getLogger(__name__)

_REASONS = {
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}


ISSUER_PATH = "/issuer.der"
# Where a serving CA records its number of shards (`record_shards`), for
# `acmekit server certs revoke`, which must remake the shard the CA serves.
SETTING = "crl"
_FILE_BATCH = 1000  # revoked rows filed under their shard in one transaction


def shard_of(serial: int, shards: int) -> int:
    return serial % shards


def crl_url(base: str, shard: int) -> str:
    return f"{base}/crl/{shard}.crl"


def record_shards(store: Store, shards: int) -> None:
    """Record the number of shards this CA serves (the last process to start wins:
    processes sharing a database are meant to share a configuration)."""
    store.accounts.put_setting(SETTING, json.dumps({"shards": shards}))


def recorded_shards(store: Store) -> int | None:
    """The number of shards a serving CA recorded; None if none did (or the record is
    not one this release reads)."""
    text = store.accounts.stored_setting(SETTING)
    if text is None:
        return None
    try:
        shards = json.loads(text)["shards"]
    except (TypeError, KeyError, ValueError):
        return None
    return shards if type(shards) is int and shards >= 1 else None


def _entry(rec: CertificateRecord | RevokedEntry) -> x509.RevokedCertificate:
    assert rec.revoked_at is not None
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(int(rec.serial, 16))
        .revocation_date(rec.revoked_at)
    )
    reason = _REASONS.get(rec.revocation_reason or 0)
    if reason is not None:
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
    return builder.build()


def build_crl(
    issuer: Issuer,
    revoked: Sequence[CertificateRecord | RevokedEntry],
    *,
    number: int,
    url: str,
    this_update: datetime,
    next_update: datetime,
) -> bytes:
    """A signed CRL (DER) listing `revoked`, for the shard whose URL is `url`."""
    idp = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        only_contains_user_certs=True,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    # The entries given at once: `add_revoked_certificate` copies the list each time,
    # so adding them one by one costs the square of their number.
    builder = (
        x509.CertificateRevocationListBuilder(revoked_certificates=[_entry(r) for r in revoked])
        .issuer_name(issuer.intermediate_cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(issuer.authority_key_identifier, critical=False)
        .add_extension(idp, critical=True)
    )
    # A file key or the token's (acmekit.server.signing); the CRL is checked before use.
    crl = sign_crl_with(builder, issuer.intermediate_key)
    return crl.public_bytes(serialization.Encoding.DER)


class CrlPublisher:
    """Makes, stores and hands out each shard's CRL."""

    def __init__(
        self, settings: CrlSettings, base_url: str, store: Store, issuer: Issuer,
        now: Callable[[], datetime], linter: Linter | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.base_url = base_url
        self.store = store
        self.issuer = issuer
        self.now = now
        self.linter = linter
        # Shards a revocation left to remake, or whose remaking failed (the signing key
        # away): written by the event loop, taken by the rebuilder's thread.
        self._dirty: set[int] = set()
        self._dirty_lock = threading.Lock()
        self._wake: Callable[[], None] | None = None  # the rebuilder's, when it runs
        # One CRL made at a time by this process (the rebuilder's thread, a listener's
        # first CRL of a shard): two threads would sign two numbers of the same shard.
        self._building = threading.Lock()

    def url_for(self, serial: int) -> str:
        return crl_url(self.base_url, shard_of(serial, self.settings.shards))

    @property
    def issuer_url(self) -> str:
        """Where this listener serves the intermediate in DER: the certificates' AIA
        caIssuers (RFC 5280 §4.2.2.1; Baseline Requirements §7.1.2.7.7)."""
        return f"{self.base_url}{ISSUER_PATH}"

    def regenerate(self, shard: int) -> CrlRecord:
        """Sign a new CRL for `shard` and store it (retrying if another process won)."""
        with self._building:
            return self._regenerate(shard)

    def _regenerate(self, shard: int) -> CrlRecord:
        self._file_revoked()  # once: a retry is for the number, not for new rows
        for _ in range(10):
            now = self.now()
            current = self.store.certificates.crl(shard)
            number = 1 if current is None else current.number + 1
            revoked = self.store.certificates.revoked_entries(shard, self.settings.shards, now)
            der = build_crl(
                self.issuer,
                revoked,
                number=number,
                url=crl_url(self.base_url, shard),
                this_update=now,
                next_update=now + self.settings.next_update,
            )
            if self.linter is not None and self.linter.enabled:
                # Findings are logged (lint.py); the CRL is still published, since a
                # shard left past its nextUpdate would be the worse failure.
                self.linter.crl(der)
            rec = CrlRecord(shard, number, now, der)
            if self.store.certificates.save_crl(rec):
                log.info("CRL shard %d number %d: %d entries", shard, number, len(revoked))
                return rec
        raise RuntimeError(f"CRL shard {shard} could not be stored")

    def _file_revoked(self) -> None:
        """File the revoked rows not filed yet under their shard (schema 0014): the
        revocations since the last CRL, a few. Each row keeps the number of shards it
        was filed for; one filed by a process configured otherwise (a command run
        without the CA's file, a change of `[crl] shards` under way) is read by its
        serial (`revoked_entries`), so no filing depends on another process's count."""
        while self.store.certificates.file_revoked(self.settings.shards, _FILE_BATCH):
            pass

    def attach(self, wake: Callable[[], None] | None) -> None:
        """The rebuilder's wake-up (callable from any thread), or None when it stops:
        without one, `revoked` remakes the shard itself (a command-line tool, a test
        driving the authority alone)."""
        self._wake = wake

    def revoked(self, serial: int) -> None:
        """`serial` is revoked (and stored so): its shard is to be remade. With a
        rebuilder attached this only marks the shard and wakes it, so the caller (the
        revokeCert handler, on the event loop) does not wait for a CRL; without one the
        shard is remade here. With the signing key's token away the shard stays marked,
        for `refresh` once it is back (the revocation itself is stored already)."""
        shard = shard_of(serial, self.settings.shards)
        with self._dirty_lock:
            self._dirty.add(shard)
        wake = self._wake
        if wake is not None:
            wake()
            return
        try:
            self.rebuild()
        except SignerUnavailable as exc:
            log.warning("CRL shard %d waits for the signing key: %s", shard, exc)

    def dirty(self) -> frozenset[int]:
        """The shards marked to be remade."""
        with self._dirty_lock:
            return frozenset(self._dirty)

    def rebuild(self) -> None:
        """Remake every marked shard once. A shard is unmarked before it is remade, so a
        revocation stored meanwhile marks it again for the next round; a shard whose
        remaking fails is marked again, with those not reached, and the error raised."""
        with self._dirty_lock:
            shards, self._dirty = sorted(self._dirty), set()
        for n, shard in enumerate(shards):
            try:
                self.regenerate(shard)
            except BaseException:
                with self._dirty_lock:
                    self._dirty.update(shards[n:])
                raise

    def refresh(self, *, force: bool = False) -> None:
        """Remake every shard whose CRL is older than the schedule allows (all: `force`,
        as at start, when the URLs in the stored CRLs may be another listener's), and
        every marked one."""
        horizon = self.now() - self.settings.regenerate_every
        for shard in range(self.settings.shards):
            current = self.store.certificates.crl(shard)
            if force or current is None or current.this_update <= horizon:
                with self._dirty_lock:
                    self._dirty.add(shard)
        self.rebuild()

    def index(self) -> str:
        """Every shard's CRL URL, one a line: where a certificate's CDP may point."""
        urls = (crl_url(self.base_url, shard) for shard in range(self.settings.shards))
        return "".join(f"{url}\n" for url in urls)

    def stored(self, shard: int) -> bytes | None:
        """The stored CRL of `shard` (a number under `shards`), if one is stored."""
        current = self.store.certificates.crl(shard)
        return None if current is None else current.der

    def first(self, shard: int) -> bytes:
        """The stored CRL of `shard`, else one made now: a shard asked for before the
        start's refresh stored it. Made once, however many ask at a time. It signs and
        lints, so it is called off the event loop (`CrlApp`)."""
        with self._building:
            current = self.store.certificates.crl(shard)
            return (current or self._regenerate(shard)).der

    def der(self, shard: int) -> bytes | None:
        """The CRL of `shard` (made now if none is stored; `first`), or None for a
        number that is no shard."""
        if not 0 <= shard < self.settings.shards:
            return None
        return self.stored(shard) or self.first(shard)


class CrlRebuilder:
    """The process's one remaker of CRLs: woken by a revocation (`CrlPublisher.revoked`)
    or by housekeeping (`refresh_soon`), it remakes the marked shards in a thread, so
    the event loop goes on answering meanwhile. One remaking at a time: the revocations
    stored during one are remade together in the next, one CRL per shard."""

    def __init__(self, publisher: CrlPublisher) -> None:
        self.publisher = publisher
        self._wake = asyncio.Event()
        self._refresh = False

    def refresh_soon(self) -> None:
        """Remake the shards the schedule says are due, and any left marked."""
        self._refresh = True
        self._wake.set()

    def start(self) -> asyncio.Task[None]:
        """Attach to the publisher now (a revocation on the loop from here on only marks
        its shard) and run until cancelled; `stop` detaches."""
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        self.publisher.attach(wake)
        return loop.create_task(self._run())

    def stop(self) -> None:
        self.publisher.attach(None)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            refresh, self._refresh = self._refresh, False
            await self._remake(self.publisher.refresh if refresh else self.publisher.rebuild)

    async def _remake(self, work: Callable[[], None]) -> None:
        """`work` in a thread; a cancellation (the app closing) waits for it to end, so
        no CRL is being signed once the store is closed. A failure leaves its shards
        marked: housekeeping's next `refresh_soon` tries them again."""
        done = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await done
            raise
        except UNAVAILABLE as exc:
            log.warning("CRLs wait for the database: %s", exc)
        except SignerUnavailable as exc:
            log.warning("CRLs wait for the signing key: %s", exc)
        except Exception:
            log.exception("CRL remaking failed")


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class CrlApp:
    """ASGI app for the plain-HTTP CRL listener: GET /crl/{shard}.crl, the list of them
    at /crl/, and the intermediate at /issuer.der (the certificates' caIssuers)."""

    def __init__(self, publisher: CrlPublisher) -> None:
        self.publisher = publisher
        # A shard's first CRL is made in this one thread, never the loop's default
        # executor: `first` makes one CRL at a time anyway, and requests parked there
        # behind the start's refresh (or a signing key away) would take every thread
        # the CA's database writes and token signatures wait for.
        self._maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crl-first")
        self._making: dict[int, asyncio.Future[bytes]] = {}  # one per shard at a time

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # run without lifespan events
            return
        path = scope["path"]
        raw = scope.get("raw_path")
        if raw is not None and raw != path.encode():
            # One URL for each thing served (`shard_url`'s, the banner's): a path spelled
            # with percent-escapes (`/crl/%30.crl`) names nothing here.
            path = ""
        status, ctype, body = await self._answer(scope["method"], path)
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        if status == 405:  # RFC 9110 §15.5.6: a 405 MUST say what is allowed
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _answer(self, method: str, path: str) -> tuple[int, bytes, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, b"text/plain", b"method not allowed\n"
        if path == ISSUER_PATH:
            cert = self.publisher.issuer.intermediate_cert
            return 200, b"application/pkix-cert", cert.public_bytes(serialization.Encoding.DER)
        if path == "/crl/":  # the address the server's banner prints: say what is under it
            return 200, b"text/plain; charset=utf-8", self.publisher.index().encode()
        name = path.removeprefix("/crl/").removesuffix(".crl")
        der = None
        # ASCII digits only, and few: `int` reads other scripts' digits too (one CRL
        # under many URLs) and raises on more than 4300 of them (a 500 for anyone).
        # No leading zero either: shard 0 is `/crl/0.crl` (`shard_url`), not `/crl/00.crl`.
        shard = name.isascii() and name.isdigit() and len(name) <= 9
        shard = shard and (name == "0" or not name.startswith("0"))
        if path.startswith("/crl/") and path.endswith(".crl") and shard:
            try:
                der = await self._crl(int(name))
            except SignerUnavailable:  # no CRL stored yet, and none can be signed now
                return 503, b"text/plain", b"CRL not available yet; try again\n"
        if der is None:
            return 404, b"text/plain", b"no such CRL\n"
        return 200, b"application/pkix-crl", der

    async def _crl(self, shard: int) -> bytes | None:
        """The shard's stored CRL; a shard none is stored for yet (asked before the
        start's refresh stored it) has its first made in a thread, not on the event
        loop: signing and linting a CRL takes as long as its entries are many."""
        if not 0 <= shard < self.publisher.settings.shards:
            return None
        stored = self.publisher.stored(shard)
        if stored is not None:
            return stored
        making = self._making.get(shard)
        if making is None:
            loop = asyncio.get_running_loop()
            making = loop.run_in_executor(self._maker, self.publisher.first, shard)
            self._making[shard] = making
            making.add_done_callback(lambda _: self._making.pop(shard, None))
        # Shielded: a client that goes away does not end the others' wait.
        return await asyncio.shield(making)

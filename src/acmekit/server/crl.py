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
  backwards, and any of them serves the latest. CRLs are remade on a schedule and at
  once after a revocation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.server.ca import Issuer, sign_crl_with
from acmekit.server.config import CrlSettings
from acmekit.server.lint import Linter
from acmekit.server.records import CertificateRecord, CrlRecord
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


def shard_of(serial: int, shards: int) -> int:
    return serial % shards


def crl_url(base: str, shard: int) -> str:
    return f"{base}/crl/{shard}.crl"


def _entry(rec: CertificateRecord) -> x509.RevokedCertificate:
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
    revoked: Sequence[CertificateRecord],
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
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.intermediate_cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(issuer.authority_key_identifier, critical=False)
        .add_extension(idp, critical=True)
    )
    for rec in revoked:
        builder = builder.add_revoked_certificate(_entry(rec))
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
        self._behind: set[int] = set()  # shards whose remaking waits for the signing key

    def url_for(self, serial: int) -> str:
        return crl_url(self.base_url, shard_of(serial, self.settings.shards))

    @property
    def issuer_url(self) -> str:
        """Where this listener serves the intermediate in DER: the certificates' AIA
        caIssuers (RFC 5280 §4.2.2.1; Baseline Requirements §7.1.2.7.7)."""
        return f"{self.base_url}{ISSUER_PATH}"

    def regenerate(self, shard: int) -> CrlRecord:
        """Sign a new CRL for `shard` and store it (retrying if another process won)."""
        for _ in range(10):
            now = self.now()
            current = self.store.certificates.crl(shard)
            number = 1 if current is None else current.number + 1
            revoked = [
                r
                for r in self.store.certificates.revoked_certificates(now)
                if shard_of(int(r.serial, 16), self.settings.shards) == shard
            ]
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

    def revoked(self, serial: int) -> None:
        """Remake the shard that lists `serial` now that it is revoked; with the signing
        key's token away, the shard is remade by `refresh` once it is back (the
        revocation itself is stored already)."""
        shard = shard_of(serial, self.settings.shards)
        try:
            self.regenerate(shard)
        except SignerUnavailable as exc:
            log.warning("CRL shard %d waits for the signing key: %s", shard, exc)
            self._behind.add(shard)

    def refresh(self, *, force: bool = False) -> None:
        """Remake every shard whose CRL is older than the schedule allows (all: `force`,
        as at start, when the URLs in the stored CRLs may be another listener's)."""
        horizon = self.now() - self.settings.regenerate_every
        for shard in range(self.settings.shards):
            current = self.store.certificates.crl(shard)
            stale = current is None or current.this_update <= horizon
            if force or stale or shard in self._behind:
                self.regenerate(shard)
                self._behind.discard(shard)

    def index(self) -> str:
        """Every shard's CRL URL, one a line: where a certificate's CDP may point."""
        urls = (crl_url(self.base_url, shard) for shard in range(self.settings.shards))
        return "".join(f"{url}\n" for url in urls)

    def der(self, shard: int) -> bytes | None:
        if not 0 <= shard < self.settings.shards:
            return None
        current = self.store.certificates.crl(shard)
        return (current or self.regenerate(shard)).der


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class CrlApp:
    """ASGI app for the plain-HTTP CRL listener: GET /crl/{shard}.crl, the list of them
    at /crl/, and the intermediate at /issuer.der (the certificates' caIssuers)."""

    def __init__(self, publisher: CrlPublisher) -> None:
        self.publisher = publisher

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # run without lifespan events
            return
        path = scope["path"]
        raw = scope.get("raw_path")
        if raw is not None and raw != path.encode():
            # One URL for each thing served (`shard_url`'s, the banner's): a path spelled
            # with percent-escapes (`/crl/%30.crl`) names nothing here.
            path = ""
        status, ctype, body = self._answer(scope["method"], path)
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        if status == 405:  # RFC 9110 §15.5.6: a 405 MUST say what is allowed
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    def _answer(self, method: str, path: str) -> tuple[int, bytes, bytes]:
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
                der = self.publisher.der(int(name))
            except SignerUnavailable:  # no CRL stored yet, and none can be signed now
                return 503, b"text/plain", b"CRL not available yet; try again\n"
        if der is None:
            return 404, b"text/plain", b"no such CRL\n"
        return 200, b"application/pkix-crl", der

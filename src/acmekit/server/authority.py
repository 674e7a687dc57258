"""The CA's rules: what each ACME request may do, in RFC 8555's terms.

Handlers authenticate and render; everything between is here. No sockets and no
clock of its own: the store, signer, validator and `now` are injected. Background
work (validation, issuance) runs as tasks that record their outcome in the store, and
`recover()` finishes what a stopped process left behind, so nothing stays stuck.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.protocol.challenges import key_authorization
from acmekit.protocol.csr import check_csr
from acmekit.protocol.jose import b64d, eab_verify, key_from_jwk, parse_jws, thumbprint
from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
    OrderStatus,
    RevocationReason,
    authorization_status,
    order_status,
    parse_identifiers,
)
from acmekit.protocol.problems import (
    AcmeError,
    Problem,
    ProblemType,
    malformed,
    not_found,
    problem,
    unauthorized,
)
from acmekit.server.auth import Authenticated, account_id_from_kid
from acmekit.server.ca import Issuer, issue_certificate, new_serial, pem_chain
from acmekit.server.config import ServerConfig
from acmekit.server.records import (
    AccountRecord,
    AuthorizationRecord,
    CertificateRecord,
    ChallengeRecord,
    OrderRecord,
)
from acmekit.server.store import Store
from acmekit.server.validation import Validator

log = logging.getLogger(__name__)

Signer = Callable[
    [x509.CertificateSigningRequest, Sequence[Identifier], int, datetime, datetime],
    Awaitable[x509.Certificate],
]

# Issued certificates are backdated a little so that clocks running slow accept them.
BACKDATE = timedelta(minutes=1)


def new_id() -> str:
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class AuthzView:
    record: AuthorizationRecord
    status: AuthorizationStatus


@dataclass(frozen=True)
class OrderView:
    record: OrderRecord
    status: OrderStatus
    authzs: tuple[AuthzView, ...]

    @property
    def error(self) -> dict[str, Any] | None:
        """The order's own error, else the first failed challenge's (§7.1.3 `error`)."""
        if self.record.error is not None:
            return self.record.error
        if self.status != OrderStatus.INVALID:
            return None
        for authz in self.authzs:
            for ch in authz.record.challenges:
                if ch.error is not None:
                    return ch.error
        return None


def _challenge_types(ident: Identifier, wildcard: bool) -> tuple[ChallengeType, ...]:
    """§7.1.3 and RFC 8738 §7: wildcards only by dns-01, IP addresses never by dns-01."""
    if wildcard:
        return (ChallengeType.DNS_01,)
    if ident.type == IdentifierType.IP:
        return (ChallengeType.HTTP_01, ChallengeType.TLS_ALPN_01)
    return (ChallengeType.HTTP_01, ChallengeType.DNS_01, ChallengeType.TLS_ALPN_01)


def check_contacts(contact: object) -> tuple[str, ...]:
    """§7.3: mailto: URLs only, one plain address each (invalidContact otherwise)."""
    if contact is None:
        return ()
    if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
        raise malformed("contact must be an array of strings")
    if len(contact) > 10:
        raise problem(ProblemType.INVALID_CONTACT, "at most 10 contacts")
    for url in contact:
        if not url.startswith("mailto:"):
            raise problem(ProblemType.UNSUPPORTED_CONTACT, f"only mailto: contacts: {url!r}")
        addr = url.removeprefix("mailto:")
        local, at, domain = addr.partition("@")
        bad = not at or not local or "." not in domain or any(c in addr for c in "?,; <>")
        if bad or domain.startswith(".") or domain.endswith("."):
            raise problem(ProblemType.INVALID_CONTACT, f"{url!r} is not a valid email address")
    return tuple(contact)


class Authority:
    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        issuer: Issuer,
        validator: Validator,
        now: Callable[[], datetime],
        signer: Signer | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.issuer = issuer
        self.validator = validator
        self.now = now
        self.sign: Signer = signer or self._sign
        self._tasks: set[asyncio.Task[None]] = set()
        self.finalize_wait = config.finalize_wait
        self.stale_after = timedelta(seconds=config.stale_after)

    async def _sign(
        self,
        csr: x509.CertificateSigningRequest,
        idents: Sequence[Identifier],
        serial: int,
        not_before: datetime,
        not_after: datetime,
    ) -> x509.Certificate:
        if self.config.issuance_delay:
            await asyncio.sleep(self.config.issuance_delay)
        return issue_certificate(
            self.issuer, csr, idents, serial=serial, not_before=not_before, not_after=not_after
        )

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for background validations and issuances (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # accounts ---------------------------------------------------------------------

    def new_account(self, auth: Authenticated, url: str) -> tuple[AccountRecord, bool]:
        """§7.3: returns (account, created). An existing key returns its account."""
        payload = auth.payload if isinstance(auth.payload, dict) else None
        if payload is None:
            raise malformed("newAccount needs a JSON object payload")
        jwk = auth.jws.protected["jwk"]
        existing = self.store.account_by_thumbprint(thumbprint(auth.key))
        if existing is not None:
            if existing.status != AccountStatus.VALID:
                raise unauthorized(f"account is {existing.status}")
            return existing, False
        if payload.get("onlyReturnExisting") is True:
            raise problem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account for this key")
        contact = check_contacts(payload.get("contact"))
        if self.config.terms_of_service and payload.get("termsOfServiceAgreed") is not True:
            raise malformed("you must agree to the terms of service (termsOfServiceAgreed)")
        eab_kid = self._check_eab(payload.get("externalAccountBinding"), jwk, url)
        rec = AccountRecord(
            id=new_id(),
            thumbprint=thumbprint(auth.key),
            jwk={k: str(v) for k, v in jwk.items()},
            contact=contact,
            status=AccountStatus.VALID,
            created=self.now(),
            eab_kid=eab_kid,
        )
        stored = self.store.add_account(rec)
        return stored, stored.id == rec.id

    def _check_eab(self, eab: object, jwk: dict[str, Any], url: str) -> str | None:
        """§7.3.4: an HS256 JWS over the account key, by a key the CA handed out."""
        if eab is None:
            if self.config.eab_required:
                raise problem(
                    ProblemType.EXTERNAL_ACCOUNT_REQUIRED, "this CA requires externalAccountBinding"
                )
            return None
        inner = parse_jws(eab)
        kid = inner.protected.get("kid")
        if inner.protected.get("alg") != "HS256" or "nonce" in inner.protected:
            raise malformed("externalAccountBinding must be HS256 with no nonce")
        if not isinstance(kid, str) or kid not in self.config.eab_keys:
            raise unauthorized("externalAccountBinding kid is unknown")
        if inner.protected.get("url") != url:
            raise unauthorized("externalAccountBinding url does not match newAccount")
        bound = inner.payload_json()
        if not isinstance(bound, dict) or thumbprint(key_from_jwk(bound)) != thumbprint(
            key_from_jwk(jwk)
        ):
            raise unauthorized("externalAccountBinding does not bind this account key")
        if not eab_verify(inner, b64d(self.config.eab_keys[kid])):
            raise unauthorized("externalAccountBinding signature is invalid")
        if self.store.eab_kid_used(kid):
            raise unauthorized("externalAccountBinding key is already bound to an account")
        return kid

    def update_account(self, auth: Authenticated, account_id: str) -> AccountRecord:
        """§7.3.2 and §7.3.6: POST-as-GET, contact update, or deactivation."""
        account = auth.require_account()
        if account.id != account_id:
            raise unauthorized("the JWS kid does not match this account URL")
        payload = auth.payload
        if payload is None:
            return account
        if not isinstance(payload, dict):
            raise malformed("account update needs a JSON object payload")
        status = payload.get("status")
        if status is not None and status != AccountStatus.DEACTIVATED:
            raise malformed("a client may only set status to 'deactivated'")
        contact = check_contacts(payload["contact"]) if "contact" in payload else None
        self.store.update_account(
            account.id,
            contact=contact,
            status=AccountStatus.DEACTIVATED if status else None,
        )
        updated = self.store.account(account.id)
        assert updated is not None
        return updated

    def key_change(self, auth: Authenticated, url: str, account_prefix: str) -> AccountRecord:
        """§7.3.5: an inner JWS, signed by the new key, names the account and old key."""
        account = auth.require_account()
        inner = parse_jws(auth.payload)
        header = inner.protected
        if "jwk" not in header or "kid" in header or "nonce" in header:
            raise malformed("inner JWS must carry jwk, and no kid or nonce")
        if header.get("url") != url:
            raise malformed("inner JWS url must equal the outer url")
        new_key = key_from_jwk(header["jwk"])
        if not inner.verify(new_key):
            raise malformed("inner JWS signature is invalid")
        body = inner.payload_json()
        if not isinstance(body, dict) or not isinstance(body.get("account"), str):
            raise malformed("keyChange payload needs account and oldKey")
        if account_id_from_kid(body["account"], account_prefix) != account.id:
            raise unauthorized("keyChange account does not match the JWS kid")
        if thumbprint(key_from_jwk(body.get("oldKey"))) != account.thumbprint:
            raise unauthorized("oldKey is not the account's current key")
        new_thumb = thumbprint(new_key)
        other = self.store.account_by_thumbprint(new_thumb)
        if other is not None or not self.store.change_account_key(
            account.id, {k: str(v) for k, v in header["jwk"].items()}, new_thumb
        ):
            holder = other.id if other else "another account"
            raise problem(
                ProblemType.MALFORMED, f"new key is already in use by {holder}", status=409
            )
        updated = self.store.account(account.id)
        assert updated is not None
        return updated

    # orders -----------------------------------------------------------------------

    def new_order(self, account: AccountRecord, payload: object) -> OrderView:
        """§7.4: reuse the account's live authorizations, create the rest."""
        if not isinstance(payload, dict):
            raise malformed("newOrder needs a JSON object payload")
        for field in ("notBefore", "notAfter"):
            if payload.get(field) is not None:
                raise malformed(f"{field} is not supported by this CA")
        idents = parse_identifiers(payload.get("identifiers"), self.config.max_identifiers)
        now = self.now()
        authz_ids: list[str] = []
        fresh: list[AuthorizationRecord] = []
        for ident in idents:
            base = Identifier(ident.type, ident.base_name)
            reused = self._reusable(account.id, base, ident.is_wildcard, now)
            if reused is None:
                reused = self._new_authz(account.id, base, ident.is_wildcard, now)
                fresh.append(reused)
            authz_ids.append(reused.id)
        order = OrderRecord(
            id=new_id(),
            account_id=account.id,
            identifiers=idents,
            authz_ids=tuple(authz_ids),
            expires=now + self.config.order_lifetime,
            created=now,
            profile=payload.get("profile") if isinstance(payload.get("profile"), str) else None,
            replaces=payload.get("replaces") if isinstance(payload.get("replaces"), str) else None,
        )
        self.store.add_order(order, fresh)
        return self.order_view(order)

    def _reusable(
        self, account_id: str, ident: Identifier, wildcard: bool, now: datetime
    ) -> AuthorizationRecord | None:
        # An authorization must outlive the order by a margin to be worth reusing.
        horizon = now + timedelta(days=1)
        for rec in self.store.reusable_authorizations(account_id, ident, wildcard, horizon):
            status = self._authz_status(rec, now)
            if status in (AuthorizationStatus.VALID, AuthorizationStatus.PENDING):
                return rec
        return None

    def _new_authz(
        self, account_id: str, ident: Identifier, wildcard: bool, now: datetime
    ) -> AuthorizationRecord:
        authz_id = new_id()
        challenges = tuple(
            ChallengeRecord(
                id=new_id(),
                authz_id=authz_id,
                type=kind,
                token=secrets.token_urlsafe(32),
                status=ChallengeStatus.PENDING,
            )
            for kind in _challenge_types(ident, wildcard)
        )
        return AuthorizationRecord(
            id=authz_id,
            account_id=account_id,
            identifier=ident,
            wildcard=wildcard,
            stored_status=AuthorizationStatus.PENDING,
            expires=now + self.config.pending_authz_lifetime,
            challenges=challenges,
        )

    def _authz_status(self, rec: AuthorizationRecord, now: datetime) -> AuthorizationStatus:
        return authorization_status(
            rec.stored_status, (c.status for c in rec.challenges), rec.expires, now
        )

    def authz_view(self, rec: AuthorizationRecord) -> AuthzView:
        return AuthzView(rec, self._authz_status(rec, self.now()))

    def order_view(self, order: OrderRecord) -> OrderView:
        now = self.now()
        authzs = tuple(self.authz_view(a) for a in self.store.authorizations(order.authz_ids))
        status = order_status(
            (a.status for a in authzs),
            expires=order.expires,
            now=now,
            finalizing=order.finalize_started is not None,
            has_certificate=order.certificate_id is not None,
            failed=order.error is not None,
        )
        return OrderView(order, status, authzs)

    def owned_order(self, account: AccountRecord, order_id: str) -> OrderRecord:
        order = self.store.order(order_id)
        if order is None:
            raise not_found(f"no order {order_id}")
        if order.account_id != account.id:
            raise unauthorized("this order belongs to another account")
        return order

    def owned_authz(self, account: AccountRecord, authz_id: str) -> AuthorizationRecord:
        authz = self.store.authorization(authz_id)
        if authz is None:
            raise not_found(f"no authorization {authz_id}")
        if authz.account_id != account.id:
            raise unauthorized("this authorization belongs to another account")
        return authz

    def account_orders(self, account: AccountRecord) -> list[OrderRecord]:
        return self.store.account_orders(account.id)

    # authorizations and challenges --------------------------------------------------

    def update_authz(self, auth: Authenticated, authz_id: str) -> AuthzView:
        """POST-as-GET, or §7.5.2 deactivation of a pending or valid authorization."""
        authz = self.owned_authz(auth.require_account(), authz_id)
        payload = auth.payload
        if payload is None:
            return self.authz_view(authz)
        if not isinstance(payload, dict) or payload.get("status") != "deactivated":
            raise malformed("an authorization may only be updated to status 'deactivated'")
        current = self.authz_view(authz).status
        if current not in (AuthorizationStatus.PENDING, AuthorizationStatus.VALID):
            raise malformed(f"cannot deactivate an authorization that is {current}")
        self.store.set_authorization_status(authz.id, AuthorizationStatus.DEACTIVATED)
        return self.authz_view(replace(authz, stored_status=AuthorizationStatus.DEACTIVATED))

    def start_challenge(
        self, auth: Authenticated, challenge_id: str
    ) -> tuple[ChallengeRecord, AuthorizationRecord]:
        """§7.5.1: `{}` asks the CA to validate; POST-as-GET only reads."""
        account = auth.require_account()
        ch = self.store.challenge(challenge_id)
        if ch is None:
            raise not_found(f"no challenge {challenge_id}")
        authz = self.owned_authz(account, ch.authz_id)
        if auth.payload is None:
            return ch, authz
        if not isinstance(auth.payload, dict):
            raise malformed("a challenge response is a JSON object, usually {}")
        status = self.authz_view(authz).status
        if ch.status != ChallengeStatus.PENDING or status != AuthorizationStatus.PENDING:
            # Idempotent: answering a challenge twice reports where it stands.
            return ch, authz
        if self.store.start_challenge(ch.id, self.now()):
            self._spawn(self._validate(ch, authz, account.jwk))
        started = self.store.challenge(ch.id)
        assert started is not None
        return started, authz

    async def _validate(
        self, ch: ChallengeRecord, authz: AuthorizationRecord, jwk: dict[str, str]
    ) -> None:
        error: dict[str, Any] | None = None
        try:
            await self.validator.validate(
                ch.type, authz.identifier, ch.token, key_authorization(ch.token, jwk)
            )
        except AcmeError as exc:
            error = exc.problem.to_json()
            error.setdefault("identifier", authz.identifier.to_json())
        except Exception as exc:  # a bug must not leave the challenge processing
            log.exception("validation of challenge %s failed unexpectedly", ch.id)
            error = Problem(str(ProblemType.SERVER_INTERNAL), str(exc), 500).to_json()
        now = self.now()
        self.store.finish_challenge(ch.id, now, error, now + self.config.valid_authz_lifetime)
        log.info("challenge %s %s: %s", ch.id, ch.type, "invalid" if error else "valid")

    # finalize and certificates ------------------------------------------------------

    async def finalize(self, account: AccountRecord, order_id: str, payload: object) -> OrderView:
        """§7.4: check the CSR against the order, claim it once, issue."""
        order = self.owned_order(account, order_id)
        view = self.order_view(order)
        if view.status != OrderStatus.READY:
            raise problem(ProblemType.ORDER_NOT_READY, f"order is {view.status}, not ready")
        if not isinstance(payload, dict) or not isinstance(payload.get("csr"), str):
            raise malformed("finalize needs a payload with a base64url csr")
        csr_der = b64d(payload["csr"])
        csr = check_csr(csr_der, order.identifiers, key_from_jwk(account.jwk))
        if not self.store.claim_finalize(order.id, csr_der, self.now()):
            raise problem(ProblemType.ORDER_NOT_READY, "order is already being finalized")
        task = self._spawn(self._issue(order.id, csr))
        await asyncio.wait({task}, timeout=self.finalize_wait)
        done = self.store.order(order.id)
        assert done is not None
        return self.order_view(done)

    async def _issue(self, order_id: str, csr: x509.CertificateSigningRequest) -> None:
        order = self.store.order(order_id)
        assert order is not None
        now = self.now()
        not_before = now - BACKDATE
        rec = CertificateRecord(
            id=new_id(),
            serial=format(new_serial(), "x"),
            order_id=order.id,
            account_id=order.account_id,
            pem=None,
            identifiers=order.identifiers,
            not_before=not_before,
            not_after=not_before + self.config.certificate_lifetime,
            issued=now,
        )
        try:
            self.store.reserve_serial(rec)
            cert = await self.sign(
                csr, order.identifiers, int(rec.serial, 16), rec.not_before, rec.not_after
            )
            self.store.record_issued(rec.id, order.id, pem_chain(cert, self.issuer))
        except Exception as exc:
            log.exception("issuance for order %s failed", order_id)
            self.store.abandon_reservations(order.id)
            detail = f"issuance failed: {exc}"
            self.store.fail_order(
                order.id, Problem(str(ProblemType.SERVER_INTERNAL), detail, 500).to_json()
            )
            return
        log.info("order %s issued serial %s", order.id, rec.serial)

    def certificate_pem(self, cert_id: str) -> str:
        cert = self.store.certificate(cert_id)
        if cert is None or cert.pem is None:
            raise not_found(f"no certificate {cert_id}")
        return cert.pem

    def revoke(self, auth: Authenticated, payload: object) -> None:
        """§7.6: by the account that holds it or authorizations for it, or by its key."""
        if not isinstance(payload, dict) or not isinstance(payload.get("certificate"), str):
            raise malformed("revokeCert needs a base64url certificate")
        try:
            cert = x509.load_der_x509_certificate(b64d(payload["certificate"]))
        except ValueError as exc:
            raise malformed(f"certificate is not valid DER: {exc}") from exc
        rec = self.store.certificate_by_serial(format(cert.serial_number, "x"))
        if (
            rec is None
            or rec.pem is None
            or cert.public_bytes(serialization.Encoding.PEM).decode() not in rec.pem
        ):
            raise not_found("this CA did not issue that certificate")
        reason = payload.get("reason", 0)
        if not isinstance(reason, int) or reason not in RevocationReason.ALLOWED:
            raise problem(ProblemType.BAD_REVOCATION_REASON, f"reason {reason!r} is not allowed")
        self._check_revoker(auth, rec, cert)
        if not self.store.revoke(rec.id, reason, self.now()):
            raise problem(ProblemType.ALREADY_REVOKED, "certificate is already revoked")
        log.info("revoked serial %s reason %d", rec.serial, reason)

    def _check_revoker(
        self, auth: Authenticated, rec: CertificateRecord, cert: x509.Certificate
    ) -> None:
        if auth.account is None:
            if thumbprint(auth.key) != thumbprint(cert.public_key()):  # type: ignore[arg-type]
                raise unauthorized("the JWS key is not the certificate's key")
            return
        if rec.account_id == auth.account.id:
            return
        now = self.now()
        for ident in rec.identifiers:
            base = Identifier(ident.type, ident.base_name)
            found = self._reusable(auth.account.id, base, ident.is_wildcard, now)
            if found is None or self._authz_status(found, now) != AuthorizationStatus.VALID:
                raise unauthorized(f"account holds no valid authorization for {ident.value}")

    # recovery -----------------------------------------------------------------------

    async def recover(self) -> None:
        """Finish validations and issuances that a stopped process left in flight."""
        now = self.now()
        cutoff = now - self.stale_after
        for ch in self.store.stale_challenges(cutoff):
            authz = self.store.authorization(ch.authz_id)
            account = self.store.account(authz.account_id) if authz else None
            if (
                authz
                and account
                and ch.started
                and self.store.restart_challenge(ch.id, ch.started, now)
            ):
                self._spawn(self._validate(ch, authz, account.jwk))
        for order in self.store.stale_finalizations(cutoff):
            if (
                order.finalize_started
                and order.csr
                and self.store.retake_finalize(order.id, order.finalize_started, now)
            ):
                self.store.abandon_reservations(order.id)
                self._spawn(self._issue(order.id, x509.load_der_x509_csr(order.csr)))
                log.warning("resumed issuance of order %s", order.id)

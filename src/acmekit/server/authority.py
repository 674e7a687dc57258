"""The CA's rules: what each ACME request may do, in RFC 8555's terms.

Handlers authenticate and render; everything between is here. No sockets and no
clock of its own: the store, signer, validator and `now` are injected. Background
work (validation, issuance) runs as tasks that record their outcome in the store, and
`recover()` finishes what a stopped process left behind, so nothing stays stuck.

Policy lives beside the rules it guards: rate limits (ratelimits.py) are taken or checked
where each request arrives and spent when the work is done; profiles (profiles.py) set
lifetimes; ARI (RFC 9773, ari.py) names certificates and suggests renewal windows, and an
order's `replaces` is honoured once per certificate and exempts it from rate limits;
a revocation marks the revoked certificate's CRL shard, remade soon off the event
loop (crl.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.clock import utc_now
from acmekit.database import UNAVAILABLE
from acmekit.domains import registered_domain, registered_domains
from acmekit.hostport import client_key
from acmekit.protocol import jsontext
from acmekit.protocol.challenges import key_authorization
from acmekit.protocol.csr import check_csr, csr_public_key
from acmekit.protocol.ct import SignedCertificateTimestamp
from acmekit.protocol.ctpolicy import corresponds
from acmekit.protocol.frozen import frozen_for_mypy
from acmekit.protocol.jose import Jws, b64d, eab_verify, jwk_from_key, key_from_jwk, thumbprint
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
from acmekit.server import ari, paths
from acmekit.server.auth import Authenticated, KeyChange
from acmekit.server.ca import (
    Issuer,
    LeafShape,
    Linted,
    final_certificate,
    new_serial,
    pem_chain,
    precertificate,
    sign_builder,
    subscriber_builder,
)
from acmekit.server.config import Profile, ServerConfig
from acmekit.server.crl import CrlPublisher
from acmekit.server.ctsubmit import CtSubmitter
from acmekit.server.lint import Linter
from acmekit.server.mpic.quorum import Verdict
from acmekit.server.mpic.remote import Corroboration, Corroborator, refusal
from acmekit.server.mpic.wire import ACCOUNT_BOUND, CorroborationRequest
from acmekit.server.policy import KEY_COMPROMISE, BlockedAhead, Policy
from acmekit.server.profiles import check_identifiers, select_profile
from acmekit.server.ratelimits import (
    CheckAhead,
    KeyedAhead,
    LimitName,
    RateLimiter,
    Subject,
    name_set_key,
)
from acmekit.server.records import (
    AccountRecord,
    AuthorizationRecord,
    CertificateRecord,
    ChallengeRecord,
    OrderRecord,
    ValidationEvidence,
)
from acmekit.server.repos.base import Ahead
from acmekit.server.repos.orders import claimed
from acmekit.server.signing import SignerUnavailable, is_external
from acmekit.server.standing import Candidate, StandingCheck
from acmekit.server.store import Store
from acmekit.server.validation import AccountContext, Validator
from acmekit.server.validation.dnssec import Tally

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds a client is asked to wait while the signing key's token is away: a token that
# is put back is used again within a second (acmekit.server.hsm's retry_interval).
SIGNER_RETRY_AFTER = 2
# What stops an issuance without failing its order: it is taken up again by recovery.
_WAITS: tuple[type[Exception], ...] = (*UNAVAILABLE, SignerUnavailable)

Signer = Callable[
    [x509.CertificateSigningRequest, Sequence[Identifier], int, datetime, datetime, Profile],
    Awaitable[x509.Certificate],
]

# Orders in one page of an account's list (§7.1.2.1): a list of 1000 cost about 140
# times an account fetch (docs/decisions.md), and an account gains 300 orders in 3 hours.
ORDERS_PAGE_SIZE = 100

# The reasons a revocation request may give (RFC 8555 §7.6 lets the CA refuse others):
# the CRL reason codes the Baseline Requirements (§7.2.2) allow for a subscriber's
# certificate, and unspecified. Of RFC 5280's others, certificateHold (6) is suspension,
# which the BRs forbid (§4.9.13), removeFromCRL (8) belongs in delta CRLs only, and
# cACompromise (2) and aACompromise (10) speak of authorities: a subscriber's request put
# each, as it came, on the CA's CRL.
SUBSCRIBER_REASONS = RevocationReason.SUBSCRIBER

# Issued certificates are backdated a little so that clocks running slow accept them.
BACKDATE = timedelta(minutes=1)


def new_id() -> str:
    return secrets.token_urlsafe(16)


# How long an authorization must outlive a new order to be reused for it.
REUSE_MARGIN = timedelta(days=1)
# The most names whose reusable authorizations newOrder reads ahead (`reusable_ahead`):
# they are taken from a payload not yet verified, so anyone with a nonce and an account's
# URL could otherwise make the CA read `max_identifiers` of them for one request. A
# longer list is neither parsed nor read ahead (`identifiers_ahead`): its names are read
# where the handler reads, after the signature, account and rate limits.
REUSABLE_AHEAD_MOST = 10
# The largest newOrder payload parsed ahead (`identifiers_ahead`), in bytes: ten names of
# 253 octets in their objects, a profile and an ARI certificate id take 2,920 (3,360
# indented by four). A larger payload, or one with more brackets than `jsontext.MAX_DEPTH`
# (ten names have 12; more has the parsed value walked), is parsed only after the
# signature: 44 KB of empty arrays took 100 million instructions to parse and walk, which
# a request with a forged signature would make the CA spend.
AHEAD_PAYLOAD_MOST = 4096
# newOrder's reusable authorizations read ahead, by (identifier, wildcard): the horizon
# each was read for, and the read (`Authority.reusable_ahead`).
ReusableAhead = dict[tuple[Identifier, bool], tuple[datetime, Ahead[list[AuthorizationRecord]]]]


@dataclass(frozen=True, slots=True)
class LimitsAhead:
    """newOrder's rate-limit read sent with the request's account read, made for the
    identifiers `idents`: the issuance buckets' (`RateLimiter.check_ahead`;
    None when there are none to read, or more names than `REUSABLE_AHEAD_MOST`). Not
    the account's pending authorizations (`_pending_limit`): their count reads each of
    the account's undecided ones (ix_authz_pending), as many as the limit lets it hold,
    a cost no forged request may put on the CA; it rides with the new-order take, after
    the signature (`_order_limits`)."""

    idents: tuple[Identifier, ...]
    buckets: CheckAhead | None


class NewOrderReads:
    """newOrder's reads sent with the request's account read (PostgreSQL): called with
    the JWS and the account's id once the nonce passed its own checks (auth's `AheadOf`),
    it makes each identifier's read of reusable authorizations (`reusable_ahead`) and
    keeps them in `found`, and the rate limits' read (`limits_ahead`) in `limits`, for
    `new_order`. It keeps the identifiers it parsed, with the list they were parsed
    from, for `new_order` to take rather than parse that list again (`parsed`)."""

    __slots__ = ("_authority", "_docs", "_idents", "found", "limits")

    def __init__(self, authority: Authority) -> None:
        self._authority = authority
        self.found: ReusableAhead = {}
        self.limits: LimitsAhead | None = None
        self._docs: object = None
        self._idents: tuple[Identifier, ...] = ()

    def __call__(self, jws: Jws, account_id: str) -> Sequence[Ahead[Any]]:
        authority = self._authority
        docs, idents = authority.identifiers_ahead(jws)
        if not idents:
            return ()
        self._docs, self._idents = docs, idents
        now = authority.now()
        self.found = authority.reusable_ahead(account_id, idents, now)
        reads: list[Ahead[Any]] = []
        for _, read in self.found.values():
            reads.append(read)
        limits = self.limits = authority.limits_ahead(account_id, idents, now)
        if limits is not None and limits.buckets is not None:
            reads.append(limits.buckets)
        return reads

    def parsed(self, docs: object) -> tuple[Identifier, ...] | None:
        """The identifiers parsed ahead from `docs` (the verified payload's list), None
        when none were. Equal JSON values parse alike, so the ahead parse of the same
        bytes stands for the handler's; compared, not assumed, for ten names at most."""
        if self._idents and docs == self._docs:
            return self._idents
        return None


class FinalizeReads:
    """finalize's reads sent with the request's account read (PostgreSQL): the order's,
    made at once, and, when called with the JWS (auth's `AheadOf`), the blocklist's for
    the key of the CSR its payload carries (`Policy.blocked_ahead`), kept in `blocked`."""

    __slots__ = ("_policy", "blocked", "order")

    def __init__(
        self, order: Ahead[tuple[OrderRecord, list[AuthorizationRecord]] | None], policy: Policy
    ) -> None:
        self.order = order
        self.blocked: BlockedAhead | None = None
        self._policy = policy

    def __call__(self, jws: Jws, _account_id: str) -> Sequence[Ahead[Any]]:
        self.blocked = found = self._policy.blocked_ahead(jws)
        return (self.order,) if found is None else (self.order, found.read)


# RFC 8259 §2: the whitespace a JSON text may begin with.
_JSON_SPACE = b" \t\n\r"


def may_be_object(payload: bytes) -> bool:
    """Whether a JWS's payload, decoded and not parsed yet, may be a JSON object: its
    first byte past whitespace is "{" (RFC 8259 §4; the payload is read as UTF-8 and a
    byte-order mark refused, `jsontext.loads`). Not an empty one (POST-as-GET, §6.3)."""
    return payload[:1] == b"{" or payload.lstrip(_JSON_SPACE)[:1] == b"{"


class ChallengeReads:
    """The challenge's reads sent with the request's account read (PostgreSQL): its own
    with its authorization's (`challenge`), made at once, and, when called with the JWS
    (auth's `AheadOf`), its failed-validations bucket's (`failures_ahead`; none with the
    rate limits off), kept in `failures`, only for a payload that may be a JSON object:
    `start_challenge` checks that limit for a challenge response (`{}`) alone: a
    POST-as-GET (an empty payload) is answered, and any other value refused, before it."""

    __slots__ = ("_authority", "_id", "challenge", "failures")

    def __init__(self, authority: Authority, challenge_id: str) -> None:
        self._authority = authority
        self._id = challenge_id
        self.challenge = authority.store.orders.challenge_and_authorization_ahead(challenge_id)
        self.failures: KeyedAhead | None = None

    def __call__(self, jws: Jws, _account_id: str) -> Sequence[Ahead[Any]]:
        if not may_be_object(jws.decoded_payload):
            return (self.challenge,)
        self.failures = found = self._authority.failures_ahead(self._id)
        return (self.challenge,) if found is None else (self.challenge, found)


@dataclass(frozen=True)
class _Checked:
    """A standing record that passed: its `persistUntil` and how it was validated."""

    until: int | None
    record: ValidationEvidence


# Made on every read of an authorization or an order (one for each of its
# authorizations): frozen for mypy, plain at run time (acmekit.protocol.frozen), as a
# frozen dataclass sets each field through `object.__setattr__`. Never hashed.
@frozen_for_mypy
class AuthzView:
    record: AuthorizationRecord
    status: AuthorizationStatus


@frozen_for_mypy
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


async def _unless_outage(work: Awaitable[T]) -> T | None:
    """Background work (a validation, an issuance) that meets a database outage, or a
    signing key in a token that went away, stops where it is: its claim goes stale and
    `Authority.recover` takes it up again."""
    try:
        return await work
    except UNAVAILABLE as exc:
        log.warning("background work left for recovery, database unavailable: %s", exc)
    except SignerUnavailable as exc:
        log.warning("issuance left for recovery, signing key unavailable: %s", exc)
    return None


def _finalizing_already() -> AcmeError:
    return problem(ProblemType.ORDER_NOT_READY, "order is already being finalized")


def _one_attempt(ch: ChallengeRecord, challenges: Sequence[ChallengeRecord]) -> None:
    """RFC 8555 §7.1.6: an authorization is decided by the challenge the client answers;
    one that failed leaves it invalid for good. Were a second challenge of a pending
    authorization started beside the first, a failure seen by the client (authorization
    and order invalid) could turn valid when the other passed, and every authorization
    would give as many tries as it offers challenges."""
    if ch.status != ChallengeStatus.PENDING:
        return
    other = next((c for c in challenges if c.id != ch.id and c.status != ch.status), None)
    if other is not None:
        raise malformed(
            f"the {other.type} challenge of this authorization was answered already; "
            "an authorization is validated by one challenge"
        )


@functools.cache
def _leaf_shape(common_name: bool, subject_key_identifier: bool, client_auth: bool) -> LeafShape:
    """A profile's LeafShape, made once per combination (a frozen dataclass's __init__
    costs more than the lookup)."""
    return LeafShape(common_name, subject_key_identifier, client_auth)


def signer_unavailable(exc: SignerUnavailable) -> AcmeError:
    """Not the client's fault and passing, as a database outage: 503 and Retry-After
    (RFC 8555 §6.6); what the client asked for is untouched and can be asked again."""
    return problem(
        ProblemType.SERVER_INTERNAL,
        f"the CA's signing key is unavailable; try again ({exc})",
        status=503,
        retry_after=SIGNER_RETRY_AFTER,
    )


def _challenge_types(
    ident: Identifier, wildcard: bool, profile: Profile | None = None
) -> tuple[ChallengeType, ...]:
    """§7.1.3 and RFC 8738 §7: wildcards only by dns-01, IP addresses never by dns-01.
    The profile may add dns-account-01 (as dns-01: wildcards too) and dns-persist-01
    (wildcards with policy=wildcard, draft-ietf-acme-dns-persist-02 §5), DNS names only."""
    if ident.type == IdentifierType.IP:
        return (ChallengeType.HTTP_01, ChallengeType.TLS_ALPN_01)
    extra: tuple[ChallengeType, ...] = ()
    if profile is not None and profile.dns_account_01:
        extra += (ChallengeType.DNS_ACCOUNT_01,)
    if profile is not None and profile.dns_persist_01:
        extra += (ChallengeType.DNS_PERSIST_01,)
    if wildcard:
        return (ChallengeType.DNS_01, *extra)
    return (ChallengeType.HTTP_01, ChallengeType.DNS_01, ChallengeType.TLS_ALPN_01, *extra)


def _plain(text: str) -> bool:
    """No control, separator or format character (Unicode categories C* and Z*)."""
    return text.isascii() or not any(unicodedata.category(c)[0] in "CZ" for c in text)


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
        # A URI has no control characters or whitespace (RFC 3986 §2; RFC 6068 §2 has
        # them percent-encoded): "x@y.test\r\nBcc: z@w.test" is a header for whatever
        # mails or logs the contacts, not an address.
        bad = bad or any(ord(c) < 0x21 or ord(c) == 0x7F for c in addr)
        # Nor, in an internationalized address (RFC 6532), C1 controls, separators or
        # format characters (zero-width, bidi overrides): each can split or disguise a
        # line wherever the contact is shown. RFC 5321 §4.5.3.1.3 bounds a path at 256
        # octets with its brackets: an address at 254.
        bad = bad or len(addr.encode()) > 254 or not _plain(addr)
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
        crl: CrlPublisher | None = None,
        linter: Linter | None = None,
        corroborator: Corroborator | None = None,
        ct: CtSubmitter | None = None,
    ) -> None:
        self.config = config
        # Remote perspectives ([mpic]); None: the CA validates from one place only.
        self.corroborator = corroborator
        self.store = store
        self.issuer = issuer
        self.validator = validator
        self.now = now
        # The real clock defers to the database's for rate limits, which every CA
        # process sharing the database reads alike; an injected clock (tests) rules.
        real = now is utc_now  # SystemClock's `now`, the server's default
        self.limits = RateLimiter(config.rate_limits, store.buckets, database_clock=real)
        self.policy = Policy(config, store)
        self.profiles = config.all_profiles
        self.crl = crl
        # Every subscriber certificate is linted before the real key signs it (lint.py).
        self.linter = linter or Linter.for_config(config)
        self.sign: Signer = signer or self._sign
        # With CT on, every certificate is a precertificate first (ctsubmit.py).
        self.ct = ct if ct is not None else CtSubmitter.load(config.ct)
        self._tasks: set[asyncio.Task[Any]] = set()
        # Validations this process runs for each account now (see _spawn_validation).
        self._validating: dict[str, int] = {}
        self.finalize_wait = config.finalize_wait
        self.challenge_wait = config.challenge_wait
        self.stale_after = timedelta(seconds=config.stale_after)
        # draft-ietf-acme-dns-persist-02 §4.4 (standing.py).
        self.standing = StandingCheck(config.persist_jit_timeout)

    def _builder(
        self,
        csr: x509.CertificateSigningRequest,
        idents: Sequence[Identifier],
        serial: int,
        not_before: datetime,
        not_after: datetime,
        profile: Profile,
    ) -> x509.CertificateBuilder:
        return subscriber_builder(
            self.issuer,
            csr_public_key(csr),
            idents,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            crl_url=self.crl.url_for(serial) if self.crl else None,
            issuer_url=self.crl.issuer_url if self.crl else None,
            shape=_leaf_shape(
                profile.common_name, profile.subject_key_identifier, profile.client_auth
            ),
        )

    async def _sign(
        self,
        csr: x509.CertificateSigningRequest,
        idents: Sequence[Identifier],
        serial: int,
        not_before: datetime,
        not_after: datetime,
        profile: Profile,
    ) -> x509.Certificate:
        if self.config.issuance_delay:
            await asyncio.sleep(self.config.issuance_delay)
        builder = self._builder(csr, idents, serial, not_before, not_after, profile)
        # In a worker thread: the lint (pure Python, milliseconds) then yields the GIL
        # to the event loop every switch interval instead of holding up every request,
        # and a token's signature waits there. Without either, the signature is a tenth
        # of a millisecond of C and the hand-over to a thread costs more than it does.
        inline = not self.linter.enabled and not is_external(self.issuer.intermediate_key)
        if inline:
            cert = sign_builder(builder, self.issuer, self.linter)
        else:
            cert = await asyncio.to_thread(sign_builder, builder, self.issuer, self.linter)
        log.debug("issued certificate serial=%x names=%d", serial, len(idents))
        return cert

    @property
    def _ct_chain(self) -> list[x509.Certificate]:
        return [self.issuer.intermediate_cert, self.issuer.root_cert]

    async def _sign_logged(
        self,
        ct: CtSubmitter,
        rec: CertificateRecord,
        csr: x509.CertificateSigningRequest,
        profile: Profile,
    ) -> tuple[x509.Certificate, list[SignedCertificateTimestamp]]:
        """RFC 6962 §3: the precertificate (signed and linted as any certificate, and kept
        before any log sees it), its SCTs from the logs, then the final certificate made
        from the precertificate with the SCT list in place of the poison, released only if
        the two correspond. A kept precertificate (`rec.precert`: a resumed issuance) is
        logged again as it is: the logs answer with the SCTs they gave before."""
        if rec.precert is None:
            if self.config.issuance_delay:
                await asyncio.sleep(self.config.issuance_delay)
            builder = self._builder(
                csr, rec.identifiers, int(rec.serial, 16), rec.not_before, rec.not_after, profile
            )
            precert, linted = await self._signing(precertificate, builder, self.issuer, self.linter)
            der = precert.public_bytes(serialization.Encoding.DER)
            await self._off_loop(self.store.certificates.record_precert, rec.id, der)
        else:
            der = rec.precert
            precert, linted = x509.load_der_x509_certificate(der), Linted()
        scts = await ct.scts_for(precert, self._ct_chain, der)
        final = await self._signing(
            final_certificate, precert, scts, self.issuer, self.linter, linted, der
        )
        # Checked apart from how it was made (RFC 6962 §3.3): the TBS is the
        # precertificate's once the poison and the SCT list are removed.
        if not corresponds(precert, final):
            raise RuntimeError(
                f"serial {rec.serial}: the certificate differs from its precertificate"
            )
        log.debug("issued certificate serial=%s with %d SCTs", rec.serial, len(scts))
        return final, scts

    async def _signing(self, sign: Callable[..., T], *args: Any) -> T:
        """`sign(*args)` for the precertificate and the certificate: in a worker thread
        only with a token's key (whose signature waits outside the GIL). The lint runs
        here, on the loop: it is pure Python of 2-3 ms, under the interpreter's 5 ms
        switch interval, so a thread would hold the loop up as long while adding two
        hand-overs and the GIL's contention per certificate (context switches per
        request 6.9 through threads, 2.3 here, under bench/server.py; docs/decisions.md,
        "CT's cost to the CA, cut")."""
        if is_external(self.issuer.intermediate_key):
            return await asyncio.to_thread(sign, *args)
        return sign(*args)

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """A write from a coroutine. On PostgreSQL in a worker thread: its commit waits
        for the server to flush its log (a millisecond or more), and the event loop
        serves other requests meanwhile. On SQLite on the loop: a commit there is no
        wait, and the hand-over to a thread would cost more than the statement. (The
        certificate's and the precertificate's records wait for the WAL's sync, one a
        certificate, kept on the loop too: docs/decisions.md, "Synced commits".)"""
        if self.store.remote:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    def _spawn(self, coro: Awaitable[T]) -> asyncio.Task[T | None]:
        task: asyncio.Task[T | None] = asyncio.ensure_future(_unless_outage(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for background validations and issuances (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        if self.ct is not None:
            await self.ct.close()

    # accounts ---------------------------------------------------------------------

    def new_account(
        self, auth: Authenticated, eab: Jws | None, client_ip: str | None = None
    ) -> tuple[AccountRecord, bool]:
        """§7.3: returns (account, created). An existing key returns its account.
        `eab` is the externalAccountBinding, its url already checked (auth.py)."""
        payload = auth.payload if isinstance(auth.payload, dict) else None
        if payload is None:
            raise malformed("newAccount needs a JSON object payload")
        jwk = auth.jws.protected["jwk"]
        existing = self.store.accounts.account_by_thumbprint(thumbprint(auth.key))
        if existing is not None:
            if existing.status != AccountStatus.VALID:
                raise unauthorized(f"account is {existing.status}")
            return existing, False
        if payload.get("onlyReturnExisting") is True:
            raise problem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account for this key")
        self.policy.check_account_key(auth.key)
        contact = check_contacts(payload.get("contact"))
        if self.config.terms_of_service and payload.get("termsOfServiceAgreed") is not True:
            raise malformed("you must agree to the terms of service (termsOfServiceAgreed)")
        eab_kid = self._check_eab(eab, jwk)
        if client_ip is not None:
            subject = Subject(client_key(client_ip), (client_ip,))
            self.limits.take(LimitName.NEW_ACCOUNTS_PER_IP, subject, self.now())
        rec = AccountRecord(
            id=new_id(),
            thumbprint=thumbprint(auth.key),
            # The key's own JWK, not the client's spelling of it: a modulus with leading
            # zero octets (RFC 7518 §6.3.1.1 forbids them) or extra members would give
            # the stored JWK another thumbprint (RFC 7638) than the key's, and the
            # account's dns-persist-01 hashes and MPIC key authorizations are made from it.
            jwk=jwk_from_key(auth.key),
            contact=contact,
            status=AccountStatus.VALID,
            created=self.now(),
            eab_kid=eab_kid,
        )
        stored = self._add_account(rec)
        return stored, stored.id == rec.id

    def _check_eab(self, inner: Jws | None, jwk: dict[str, Any]) -> str | None:
        """§7.3.4: an HS256 JWS over the account key, by a key the CA handed out."""
        if inner is None:
            if self.config.eab_required:
                raise problem(
                    ProblemType.EXTERNAL_ACCOUNT_REQUIRED, "this CA requires externalAccountBinding"
                )
            return None
        kid = inner.protected.get("kid")
        if inner.protected.get("alg") != "HS256" or "nonce" in inner.protected:
            raise malformed("externalAccountBinding must be HS256 with no nonce")
        secret = self._eab_secret(kid)
        if secret is None or not isinstance(kid, str):
            raise unauthorized("externalAccountBinding kid is unknown")
        bound = inner.payload_json()
        if not isinstance(bound, dict) or thumbprint(key_from_jwk(bound)) != thumbprint(
            key_from_jwk(jwk)
        ):
            raise unauthorized("externalAccountBinding does not bind this account key")
        if not eab_verify(inner, b64d(secret)):
            raise unauthorized("externalAccountBinding signature is invalid")
        if self.store.accounts.eab_kid_used(kid):
            raise unauthorized("externalAccountBinding key is already bound to an account")
        return kid

    def _add_account(self, rec: AccountRecord) -> AccountRecord:
        """Store the account; one with an EAB key binds the key in the same transaction,
        atomically across requests and processes, whichever the key's source (§7.3.4:
        a key binds one account). The check in `_check_eab` only answers early."""
        kid = rec.eab_kid
        if kid is None:
            return self.store.accounts.add_account(rec)
        stored = self.store.accounts.add_bound_account(rec, self.config.eab_keys.get(kid))
        if stored is None:
            raise unauthorized("externalAccountBinding key is already bound to an account")
        return stored

    def _eab_secret(self, kid: object) -> str | None:
        """A key from the configuration file, else an unrevoked one from the database."""
        if not isinstance(kid, str) or "\x00" in kid:
            return None  # no key has a NUL in its id, and PostgreSQL text cannot hold one
        if kid in self.config.eab_keys:
            return self.config.eab_keys[kid]
        key = self.store.accounts.eab_key(kid)
        return key.hmac_key if key is not None and key.revoked is None else None

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
        self.store.accounts.update_account(
            account.id,
            contact=contact,
            status=AccountStatus.DEACTIVATED if status else None,
        )
        updated = self.store.accounts.account(account.id)
        assert updated is not None
        return updated

    def key_change(self, account: AccountRecord, change: KeyChange) -> AccountRecord:
        """§7.3.5: an inner JWS, signed by the new key, names the account and old key
        (its url and the account it names were read in auth.py)."""
        header = change.inner.protected
        if "jwk" not in header or "kid" in header or "nonce" in header:
            raise malformed("inner JWS must carry jwk, and no kid or nonce")
        new_key = key_from_jwk(header["jwk"])
        self.policy.check_account_key(new_key)
        if not change.inner.verify(new_key):
            raise malformed("inner JWS signature is invalid")
        if change.account_id != account.id:
            raise unauthorized("keyChange account does not match the JWS kid")
        if thumbprint(key_from_jwk(change.old_key)) != account.thumbprint:
            raise unauthorized("oldKey is not the account's current key")
        new_thumb = thumbprint(new_key)
        other = self.store.accounts.account_by_thumbprint(new_thumb)
        if other is not None or not self.store.accounts.change_account_key(
            account.id, jwk_from_key(new_key), new_thumb, self.now()
        ):
            holder = other.id if other else "another account"
            raise problem(
                ProblemType.MALFORMED, f"new key is already in use by {holder}", status=409
            )
        updated = self.store.accounts.account(account.id)
        assert updated is not None
        return updated

    # orders -----------------------------------------------------------------------

    def new_order_reads(self) -> NewOrderReads:
        """What makes newOrder's reads to send with the request's account (PostgreSQL)."""
        return NewOrderReads(self)

    def finalize_reads(self, order_id: str) -> FinalizeReads:
        """finalize's reads to send with the request's account (PostgreSQL)."""
        order = self.store.orders.order_with_authorizations_ahead(order_id)
        return FinalizeReads(order, self.policy)

    def identifiers_ahead(self, jws: Jws) -> tuple[object, tuple[Identifier, ...]]:
        """newOrder's identifiers list, from its JWS's payload, not verified yet, and its
        identifiers parsed: only to make reads to send with the request's account read
        (`NewOrderReads`). None parsed for a payload whose identifiers do not parse (the
        handler's checks say why), nor for a list of more than `REUSABLE_AHEAD_MOST`:
        only that many are read ahead, and a request with a forged signature or a used
        nonce is refused after the reads, so the parse of a longer list (near 40,000
        instructions a name, `max_identifiers` of them) would be the CA's work for
        anyone. Cut to its first names it would not tell the names' count once
        duplicates are merged (`limits_ahead`'s rule), nor spare the handler its parse;
        such a list is read where the handler reads (one statement for all its names),
        in as many round trips."""
        payload = jws.decoded_payload
        if (
            len(payload) > AHEAD_PAYLOAD_MOST
            or payload.count(b"[") + payload.count(b"{") > jsontext.MAX_DEPTH
        ):
            return None, ()
        try:
            docs = jws.payload_json()["identifiers"]
        except Exception:  # whatever it is, the handler's own checks say it
            return None, ()
        if not isinstance(docs, list) or len(docs) > REUSABLE_AHEAD_MOST:
            return docs, ()
        try:
            return docs, parse_identifiers(docs, self.config.max_identifiers)
        except Exception:
            return docs, ()

    def reusable_ahead(
        self, account_id: str, idents: Sequence[Identifier], now: datetime
    ) -> ReusableAhead:
        """newOrder's reads of its identifiers' reusable authorizations (`_reusable`), of
        `REUSABLE_AHEAD_MOST` of them at most, made from its JWS's payload to send with
        the request's account read (one round trip on PostgreSQL where they took one
        more). The payload is not verified yet: the reads only read, and `new_order`
        takes their answers for the identifiers of the verified payload (the same
        bytes) after its own checks."""
        horizon = now + REUSE_MARGIN
        reads = self.store.orders.reusable_authorizations_ahead
        found: ReusableAhead = {}
        for ident in idents[:REUSABLE_AHEAD_MOST]:  # the rest read by `_reusable`
            base = Identifier(ident.type, ident.base_name)
            read = reads(account_id, base, ident.is_wildcard, horizon)
            found[(base, ident.is_wildcard)] = (horizon, read)
        return found

    def limits_ahead(
        self, account_id: str, idents: tuple[Identifier, ...], now: datetime
    ) -> LimitsAhead | None:
        """newOrder's rate-limit read (`LimitsAhead`), made as `reusable_ahead`'s are,
        to send with the request's account read; None with the limits off. The
        buckets' read names a bucket per registered domain: for more names than
        `REUSABLE_AHEAD_MOST` it is left to the handler, as the reusable reads are."""
        if not self.limits.enabled:
            return None
        buckets = None
        if len(idents) <= REUSABLE_AHEAD_MOST:  # each name's registered domain looked up
            buckets = self.limits.check_ahead(self._issuance_subjects(account_id, idents), now)
        return LimitsAhead(idents, buckets)

    def new_order(
        self, account: AccountRecord, payload: object, reads: NewOrderReads | None = None
    ) -> OrderView:
        """§7.4: reuse the account's live authorizations, create the rest. `reads`: those
        of reusable ones sent with the request's account (`new_order_reads`)."""
        ahead = None if reads is None else reads.found
        if not isinstance(payload, dict):
            raise malformed("newOrder needs a JSON object payload")
        for field in ("notBefore", "notAfter"):
            if payload.get(field) is not None:
                raise malformed(f"{field} is not supported by this CA")
        docs = payload.get("identifiers")
        idents = None if reads is None else reads.parsed(docs)
        if idents is None:  # not parsed ahead (SQLite, or a list longer than read ahead)
            idents = parse_identifiers(docs, self.config.max_identifiers)
        name, profile = select_profile(
            payload.get("profile"), self.profiles, self.config.default_profile
        )
        check_identifiers(name, self.profiles, idents)
        self.policy.check_identifiers(idents)
        now = self.now()
        order_id = new_id()
        replacing = self._replaced(account, payload.get("replaces"), idents)
        replaced = None if replacing is None else replacing[0]
        limits = None if reads is None else reads.limits
        if limits is not None and limits.idents != idents:
            limits = None  # read for other names: read where the checks read
        authzs, fresh = self._order_authorizations(account, idents, now, name, profile, ahead)
        # The account's pending count, asked only for an order that adds authorizations
        # (it reads each of the account's pending ones), sent with its new-order take (a
        # renewal's, with no take, is read where `_pending_limit` asks for it).
        pending = (
            self.store.orders.pending_authorizations_ahead(account.id, now)
            if fresh and self.limits.enabled
            else None
        )
        if replaced is None:
            self._order_limits(account, idents, now, limits, pending)
        self._pending_limit(account, len(fresh), now, pending)
        order = OrderRecord(
            id=order_id,
            account_id=account.id,
            identifiers=idents,
            authz_ids=tuple(a.id for a in authzs),
            expires=now + profile.order_lifetime,
            created=now,
            profile=name,
            replaces=None if replaced is None else str(payload["replaces"]),
        )
        renewed: list[str] = []
        claim = None
        if replacing is not None:
            # Taken with the order's writes (`add_order`), not before them, by
            # compare-and-set on the holder read above: a claim taken since is a lost
            # race (alreadyReplaced), not a second read.
            replaced, previous = replacing
            claim = (replaced.id, previous)
            # RFC 9773 §5 asks only that a replacement share one identifier. The names
            # the certificate held are renewed, and their failed validations are not
            # limited; a name added beside them is a new one, limited as in any order
            # (else one certificate exempted any names, without end, from the limit that
            # keeps an account from aiming failing validations at others' hosts).
            held = set(replaced.identifiers)
            renewed = [a.id for a, i in zip(authzs, idents, strict=True) if i in held]
        if not self.store.orders.add_order(order, fresh, renewed, claim) and replaced:
            raise problem(
                ProblemType.ALREADY_REPLACED, f"certificate {replaced.serial} is already replaced"
            )
        return self.order_view(order, authzs)

    def _order_authorizations(
        self,
        account: AccountRecord,
        idents: Sequence[Identifier],
        now: datetime,
        name: str,
        profile: Profile,
        ahead: ReusableAhead | None = None,
    ) -> tuple[list[AuthorizationRecord], list[AuthorizationRecord]]:
        """Each identifier's authorization (a live one of this profile, else a new one),
        and which of them are new."""
        used: list[AuthorizationRecord] = []
        fresh: list[AuthorizationRecord] = []
        keys = []  # loops, not comprehensions (a function object each, Python 3.11)
        for ident in idents:
            keys.append((Identifier(ident.type, ident.base_name), ident.is_wildcard))
        rest = self._reusable_rest(account.id, keys, now, ahead)
        for key in keys:
            base, wildcard = key
            read = None if ahead is None else ahead.get(key)
            reused = self._reusable(account.id, base, wildcard, now, name, read, rest.get(key))
            if reused is None:
                reused = self._new_authz(account.id, base, wildcard, now, profile, name)
                fresh.append(reused)
            used.append(reused)
        return used, fresh

    def _reusable_rest(
        self,
        account_id: str,
        keys: Sequence[tuple[Identifier, bool]],
        now: datetime,
        ahead: ReusableAhead | None,
    ) -> dict[tuple[Identifier, bool], list[AuthorizationRecord]]:
        """The candidates (`_reusable`) of the names not read ahead (all of a list of
        more than `REUSABLE_AHEAD_MOST` on PostgreSQL, all on SQLite), read here, after the
        signature, the account and the rate limits, in one statement where there are
        several (`reusable_authorizations_of`): one round trip, not one a name. For the
        order's own horizon."""
        rest = keys
        if ahead is not None:
            rest = []
            for key in keys:
                if key not in ahead:
                    rest.append(key)
        if not rest:
            return {}
        orders = self.store.orders
        found = orders.reusable_authorizations_of(account_id, rest, now + REUSE_MARGIN)
        return dict(zip(rest, found, strict=True))

    def _order_limits(
        self,
        account: AccountRecord,
        idents: Sequence[Identifier],
        now: datetime,
        ahead: LimitsAhead | None = None,
        pending: Ahead[tuple[int, datetime | None]] | None = None,
    ) -> None:
        """Take a new-order token; check (not spend) the issuance limits (§6.6 early).
        `ahead`: their buckets read with the request's account (`limits_ahead`);
        `pending`: the account's pending count, sent in the take's round trip."""
        if not self.limits.enabled:
            return
        also = () if pending is None else (pending,)
        self.limits.take(LimitName.NEW_ORDERS_PER_ACCOUNT, Subject(account.id), now, also)
        buckets = None if ahead is None else ahead.buckets
        self.limits.check_all(self._issuance_subjects(account.id, idents), now, buckets)

    def _pending_limit(
        self,
        account: AccountRecord,
        fresh: int,
        now: datetime,
        ahead: Ahead[tuple[int, datetime | None]] | None,
    ) -> None:
        """rateLimited when `fresh` more pending authorizations would pass the account's
        ceiling; Retry-After is when its first pending one expires. `ahead`: the count
        at `now`, sent with the new-order take (else, or on SQLite, read here)."""
        cap = self.config.rate_limits.pending_authorizations_per_account
        if not fresh or not self.limits.enabled:
            return
        if ahead is None:
            pending, first = self.store.orders.pending_authorizations(account.id, now)
        else:
            pending, first = ahead.result()
        if pending + fresh <= cap:
            return
        wait = max(1, math.ceil((first - now).total_seconds())) if first else 1
        raise problem(
            ProblemType.RATE_LIMITED,
            f"too many pending authorizations: the account has {pending} and the order "
            f"needs {fresh} more, over the limit of {cap}; complete or deactivate some",
            retry_after=wait,
        )

    @staticmethod
    def _issuance_subjects(
        account_id: str, idents: Sequence[Identifier]
    ) -> list[tuple[LimitName, Subject]]:
        domains = registered_domains(i.value for i in idents)
        found = [(LimitName.CERTIFICATES_PER_DOMAIN, Subject(d, (account_id,))) for d in domains]
        names = Subject(name_set_key(idents), (account_id, *domains))
        return [*found, (LimitName.DUPLICATE_CERTIFICATES, names)]

    def _replaced(
        self, account: AccountRecord, replaces: object, idents: Sequence[Identifier]
    ) -> tuple[CertificateRecord, str | None] | None:
        """RFC 9773 §5: the certificate `replaces` names, checked, and the failed order
        that held its claim (`_replacement_open`); None if absent."""
        if replaces is None:
            return None
        if not isinstance(replaces, str):
            raise malformed("replaces must be a certID string")
        cert_id = ari.parse_cert_id(replaces)
        rec = self._certificate_by_cert_id(cert_id)
        if rec is None or rec.account_id != account.id:
            raise malformed(f"replaces names no certificate of this account: {replaces}")
        if not {i.value.lower() for i in idents} & {i.value.lower() for i in rec.identifiers}:
            raise malformed("a replacement must share an identifier with the certificate")
        return rec, self._replacement_open(rec)

    def _replacement_open(self, rec: CertificateRecord) -> str | None:
        """The failed order that held the replacement claim (None if unclaimed), or
        alreadyReplaced (409) if a live order or a certificate replaced it."""
        previous = self.store.certificates.replacement(rec.id)
        if previous is None:
            return None
        order = self.store.orders.order(previous)
        if order is None or self.order_view(order).status == OrderStatus.INVALID:
            return previous
        raise problem(ProblemType.ALREADY_REPLACED, f"certificate {rec.serial} is already replaced")

    def _certificate_by_cert_id(self, cert_id: ari.CertId) -> CertificateRecord | None:
        if cert_id.key_id != self.issuer.authority_key_identifier.key_identifier:
            return None
        rec = self.store.certificates.certificate_by_serial(format(cert_id.serial, "x"))
        return rec if rec is not None and rec.pem is not None else None

    def _reusable(
        self,
        account_id: str,
        ident: Identifier,
        wildcard: bool,
        now: datetime,
        profile: str | None = None,
        ahead: tuple[datetime, Ahead[list[AuthorizationRecord]]] | None = None,
        read: list[AuthorizationRecord] | None = None,
    ) -> AuthorizationRecord | None:
        """A live authorization to reuse; for an order, only one made for its profile and,
        if valid, validated within the profile's `authz_reuse` period (Baseline
        Requirements §4.2.1: how long a domain validation may be reused). `ahead`: the
        candidates read earlier (`reusable_ahead`), with the horizon they were read for;
        `read`, those read for this horizon with other names' (`_reusable_rest`)."""
        # An authorization must outlive the order by a margin to be worth reusing.
        horizon = now + REUSE_MARGIN
        if read is not None:
            found = read
        elif ahead is not None and ahead[0] <= horizon:
            # Read for an earlier horizon: the same candidates and maybe more, which
            # expire before this one. Those sort after all of these (newest first), so
            # the first five, less them, are the first five this horizon would read.
            found = [rec for rec in ahead[1].result() if rec.expires > horizon]
        else:  # none read ahead, or the clock went back since: read now
            found = self.store.orders.reusable_authorizations(account_id, ident, wildcard, horizon)
        reuse = None if profile is None else self.profiles[profile].authz_reuse
        for rec in found:
            if profile is not None and (rec.profile or self.config.default_profile) != profile:
                continue
            status = self._authz_status(rec, now)
            if status == AuthorizationStatus.VALID and reuse is not None:
                validated = [c.validated for c in rec.challenges if c.validated is not None]
                if not validated or now - max(validated) > reuse:
                    continue  # too old to reuse: the order gets a fresh authorization
            if status in (AuthorizationStatus.VALID, AuthorizationStatus.PENDING):
                return rec
        return None

    def _profile_of_authz(self, authz: AuthorizationRecord) -> Profile:
        name = authz.profile or self.config.default_profile
        return self.profiles.get(name) or self.profiles[self.config.default_profile]

    def _new_authz(
        self,
        account_id: str,
        ident: Identifier,
        wildcard: bool,
        now: datetime,
        profile: Profile,
        name: str | None = None,
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
            for kind in _challenge_types(ident, wildcard, profile)
        )
        return AuthorizationRecord(
            id=authz_id,
            account_id=account_id,
            identifier=ident,
            wildcard=wildcard,
            stored_status=AuthorizationStatus.PENDING,
            expires=now + profile.pending_authz_lifetime,
            challenges=challenges,
            profile=name,
        )

    def _authz_status(self, rec: AuthorizationRecord, now: datetime) -> AuthorizationStatus:
        statuses = []  # a loop, not a generator (a function object a call, Python 3.11)
        for ch in rec.challenges:
            statuses.append(ch.status)
        return authorization_status(rec.stored_status, statuses, rec.expires, now)

    def authz_view(self, rec: AuthorizationRecord) -> AuthzView:
        return AuthzView(rec, self._authz_status(rec, self.now()))

    def order_view(
        self, order: OrderRecord, records: Sequence[AuthorizationRecord] | None = None
    ) -> OrderView:
        """The order and its status; `records` are its authorizations if the caller has
        them already (finalize: they do not change while it runs)."""
        now = self.now()
        if records is None:
            records = self.store.orders.authorizations(order.authz_ids)
        # A loop, not generators: each is a function object made and called (Python
        # 3.11), and a poll of a decided order has no authorization to walk.
        views: list[AuthzView] = []
        statuses: list[AuthorizationStatus] = []
        for rec in records:
            authz_status = self._authz_status(rec, now)
            views.append(AuthzView(rec, authz_status))
            statuses.append(authz_status)
        if len(records) < len(order.authz_ids) and _undecided(order):
            statuses.extend(_gone(order, records))
        status = order_status(
            statuses,
            expires=order.expires,
            now=now,
            finalizing=order.finalize_started is not None,
            has_certificate=order.certificate_id is not None,
            failed=order.error is not None,
        )
        return OrderView(order, status, tuple(views))

    def owned_order_view(
        self,
        account: AccountRecord,
        order_id: str,
        ahead: Ahead[tuple[OrderRecord, list[AuthorizationRecord]] | None] | None = None,
    ) -> OrderView:
        """The account's order with its status (one statement reads it and its
        authorizations; `ahead`, that statement sent with the request's account read)."""
        return self._owned(account, order_id, ahead, self.store.orders.order_with_authorizations)

    def polled_order_view(
        self,
        account: AccountRecord,
        order_id: str,
        ahead: Ahead[tuple[OrderRecord, list[AuthorizationRecord]] | None] | None = None,
    ) -> OrderView:
        """`owned_order_view` for a read of the order (§7.1.3): one with a certificate,
        an error or a finalize claim is read without its authorizations, as its status
        and error do not depend on them (order_status, OrderView.error); its
        `authorizations` URLs are its own `authz_ids`. The view's `authzs` are then
        empty."""
        return self._owned(account, order_id, ahead, self.store.orders.polled_order)

    def _owned(
        self,
        account: AccountRecord,
        order_id: str,
        ahead: Ahead[tuple[OrderRecord, list[AuthorizationRecord]] | None] | None,
        read: Callable[[str], tuple[OrderRecord, list[AuthorizationRecord]] | None],
    ) -> OrderView:
        found = read(order_id) if ahead is None else ahead.result()
        if found is None:
            raise not_found(f"no order {order_id}")
        order, records = found
        if order.account_id != account.id:
            raise unauthorized("this order belongs to another account")
        return self.order_view(order, records)

    def owned_authz(
        self,
        account: AccountRecord,
        authz_id: str,
        ahead: Ahead[AuthorizationRecord | None] | None = None,
    ) -> AuthorizationRecord:
        authz = self.store.orders.authorization(authz_id) if ahead is None else ahead.result()
        if authz is None:
            raise not_found(f"no authorization {authz_id}")
        if authz.account_id != account.id:
            raise unauthorized("this authorization belongs to another account")
        return authz

    def account_orders(
        self, account: AccountRecord, after: tuple[int, str] | None
    ) -> tuple[list[tuple[int, str]], bool]:
        """One page of the account's orders, newest first, after `after` (created, id):
        (created, id) of each, and whether more follow. Orders known to be invalid (an
        error, or expired unissued) are left out (§7.1.2.1 SHOULD NOT include them)."""
        size = ORDERS_PAGE_SIZE
        found = self.store.orders.account_orders(account.id, self.now(), after, size + 1)
        return found[:size], len(found) > size

    # authorizations and challenges --------------------------------------------------

    def update_authz(
        self,
        auth: Authenticated,
        authz_id: str,
        ahead: Ahead[AuthorizationRecord | None] | None = None,
    ) -> AuthzView:
        """POST-as-GET, or §7.5.2 deactivation of a pending or valid authorization."""
        authz = self.owned_authz(auth.require_account(), authz_id, ahead)
        if auth.is_post_as_get:  # no payload to decode (`payload`, a cached property)
            return self.authz_view(authz)
        payload = auth.payload
        if payload is None:
            return self.authz_view(authz)
        if not isinstance(payload, dict) or payload.get("status") != "deactivated":
            raise malformed("an authorization may only be updated to status 'deactivated'")
        current = self.authz_view(authz).status
        if current not in (AuthorizationStatus.PENDING, AuthorizationStatus.VALID):
            raise malformed(f"cannot deactivate an authorization that is {current}")
        self.store.orders.set_authorization_status(authz.id, AuthorizationStatus.DEACTIVATED)
        return self.authz_view(replace(authz, stored_status=AuthorizationStatus.DEACTIVATED))

    async def start_challenge(
        self,
        auth: Authenticated,
        challenge_id: str,
        account_uri: str,
        ahead: Ahead[tuple[ChallengeRecord, AuthorizationRecord] | None] | None = None,
        failures: KeyedAhead | None = None,
    ) -> tuple[ChallengeRecord, AuthorizationRecord]:
        """§7.5.1: `{}` asks the CA to validate; POST-as-GET only reads. `account_uri`
        is what a CAA `accounturi` must name (RFC 8657 §3).

        The answer is "the updated challenge object" (§7.5.1). A validation that ends
        within `challenge_wait` is answered with its outcome, valid or invalid (§7.1.6
        lets a challenge move from processing to either), so a client's next look at
        the authorization finds it final instead of polling again; a slower one is
        answered `processing` and finishes in the background, as before. lego reads a
        valid or invalid answer as final; certbot polls the authorization either way.
        `ahead` and `failures`: the challenge's read and its failed-validations bucket's
        (`failures_ahead`), sent with the request's account read."""
        account = auth.require_account()
        orders = self.store.orders
        found = (
            orders.challenge_and_authorization(challenge_id) if ahead is None else ahead.result()
        )
        if found is None:
            raise not_found(f"no challenge {challenge_id}")
        ch, authz = found
        if authz.account_id != account.id:
            raise unauthorized("this authorization belongs to another account")
        if auth.payload is None:
            return ch, authz
        if not isinstance(auth.payload, dict):
            raise malformed("a challenge response is a JSON object, usually {}")
        status = self.authz_view(authz).status
        if ch.status != ChallengeStatus.PENDING or status != AuthorizationStatus.PENDING:
            # Idempotent: answering a challenge twice reports where it stands.
            return ch, authz
        _one_attempt(ch, authz.challenges)
        if self._counts_failures(authz):
            subject = self._failure_subject(authz)
            self.limits.check(LimitName.FAILED_VALIDATIONS, subject, self.now(), failures)
        self._validation_room(account)
        now = self.now()
        # The URL is kept so that a validation resumed elsewhere names it (RFC 8657 §3).
        if not self.store.orders.start_challenge(ch.id, now, account_uri):  # started already
            found = self.store.orders.challenge_and_authorization(ch.id)
            assert found is not None
            _one_attempt(found[0], found[1].challenges)  # another process started one
            return found[0], authz
        processing = replace(
            ch, status=ChallengeStatus.PROCESSING, started=now, account_uri=account_uri
        )
        task = self._spawn_validation(processing, authz, account, account_uri)
        await asyncio.wait({task}, timeout=self.challenge_wait)
        if not task.done() or task.cancelled():
            return processing, authz  # the client polls the authorization
        if (failure := task.exception()) is not None:  # a bug, after the outcome's record
            log.error("validation of challenge %s failed", ch.id, exc_info=failure)
            return processing, authz
        return task.result() or processing, authz  # None: left for recovery

    def failures_ahead(self, challenge_id: str) -> KeyedAhead | None:
        """The challenge's failed_validations bucket (`_failure_subject`), read by its id
        to send with the request's account read; None with the limits off."""
        name = LimitName.FAILED_VALIDATIONS
        return self.limits.check_of_challenge_ahead(name, challenge_id, self.now())

    def _validation_room(self, account: AccountRecord) -> None:
        """rateLimited when the account has as many validations running here as one
        order may have identifiers. Each holds sockets for up to `validation_timeout`
        against a target the client chose, and an account could hold 1,000 pending
        authorizations (more with more accounts) and answer all at once: as many
        connections held open towards targets that never answer, until the process
        ran out of file descriptors and served no one (RFC 8555 §6.6, rateLimited)."""
        cap = self.config.max_identifiers
        if self._validating.get(account.id, 0) >= cap:
            wait = max(1, math.ceil(self.config.validation_timeout))
            raise problem(
                ProblemType.RATE_LIMITED,
                f"the account has {cap} validations under way, the most at once; "
                "answer this challenge when one has ended",
                retry_after=wait,
            )

    def _spawn_validation(
        self,
        ch: ChallengeRecord,
        authz: AuthorizationRecord,
        account: AccountRecord,
        account_uri: str,
    ) -> asyncio.Task[ChallengeRecord | None]:
        """`_validate` as a task, counted against its account until it ends."""
        held = self._validating
        held[account.id] = held.get(account.id, 0) + 1

        def release(_: object) -> None:
            left = held.get(account.id, 1) - 1
            if left > 0:
                held[account.id] = left
            else:
                held.pop(account.id, None)

        task = self._spawn(self._validate(ch, authz, account, account_uri))
        task.add_done_callback(release)
        return task

    async def _validate(
        self,
        ch: ChallengeRecord,
        authz: AuthorizationRecord,
        account: AccountRecord,
        account_uri: str,
    ) -> ChallengeRecord:
        """Validate `ch` (processing) and record the outcome; returns the challenge as
        recorded."""
        error: dict[str, Any] | None = None
        until: int | None = None
        dcv, caa = Tally(), Tally()  # whether the DNS answers were authenticated (AD)
        corroboration: Corroboration | None = None
        try:
            # Only dns-account-01 and dns-persist-01 read the account's keys; the others
            # skip the lookup of its prior keys (a tenth of the CA's CPU under http-01).
            context = (
                self._account_context(account, account_uri, authz.wildcard)
                if ch.type in ACCOUNT_BOUND
                else None
            )
            # §8.1, with the thumbprint the account keeps beside its key (not hashed again)
            key_auth = f"{ch.token}.{account.thumbprint}"
            with dcv.counting():
                until = await self.validator.validate(
                    ch.type, authz.identifier, ch.token, key_auth, account=context
                )
            with caa.counting():
                await self.policy.check_caa(authz.identifier, authz.wildcard, account_uri, ch.type)
            if self.corroborator is not None:
                corroboration = await self._corroborate(
                    self.corroborator, ch, authz, account, account_uri, context
                )
                if corroboration.verdict != Verdict.PASS:
                    raise refusal(corroboration, authz.identifier.to_json())
        except AcmeError as exc:
            error = exc.problem.to_json()
            error.setdefault("identifier", authz.identifier.to_json())
        except UNAVAILABLE:
            raise  # not the client's failure: left processing, for recovery
        except Exception as exc:  # a bug must not leave the challenge processing
            log.exception("validation of challenge %s failed unexpectedly", ch.id)
            error = Problem(str(ProblemType.SERVER_INTERNAL), str(exc), 500).to_json()
        now = self.now()
        evidence = _evidence(corroboration, dcv, caa)
        expires = self._valid_until(authz, now, until)
        finish = self.store.orders.finish_challenge
        await self._off_loop(finish, ch.id, now, error, expires, evidence)
        if error is not None and self._counts_failures(authz):
            subject = self._failure_subject(authz)
            await self._off_loop(self.limits.spend, LimitName.FAILED_VALIDATIONS, subject, now)
        # The outcome's problem type only: a detail may quote the token's URL or a body.
        outcome = "valid" if error is None else f"invalid ({error.get('type')})"
        log.info(
            "challenge %s %s for %s (account %s): %s%s",
            ch.id, ch.type, authz.identifier.value, account.id, outcome, _dnssec_note(evidence),
        )  # fmt: skip
        if error is None:
            if ch.type == ChallengeType.DNS_PERSIST_01:
                self.standing.passed(account.id)  # its next new-order may look at once
            return replace(ch, status=ChallengeStatus.VALID, validated=now, error=None)
        return replace(ch, status=ChallengeStatus.INVALID, validated=None, error=error)

    def _valid_until(
        self, authz: AuthorizationRecord, now: datetime, until: int | None
    ) -> datetime:
        expires = now + self._profile_of_authz(authz).valid_authz_lifetime
        if until is not None:
            # draft-ietf-acme-dns-persist-02 §4.1 item 5: not later than persistUntil.
            expires = min(expires, datetime.fromtimestamp(until, UTC))
        return expires

    async def validate_standing(
        self, account: AccountRecord, view: OrderView, account_uri: str
    ) -> OrderView:
        """draft-ietf-acme-dns-persist-02 §4.4: the order's pending authorizations that
        offer dns-persist-01 and whose record already stands become valid now, after the
        same checks as an answered challenge (the record, CAA, MPIC), within
        `persist_jit_timeout`; the others stay pending, untouched (standing.py)."""
        try:
            picked = self.standing.pick(
                account.id,
                [(a.record, a.status) for a in view.authzs],
                lambda: self.store.orders.account_validated(
                    account.id, ChallengeType.DNS_PERSIST_01
                ),
            )
        except UNAVAILABLE:
            return view  # the order is stored: answered as it stands
        if not picked:
            return view
        done = await asyncio.gather(
            *(self._validate_standing(c, account, account_uri) for c in picked)
        )
        if not any(done):
            return view
        try:
            return self.order_view(view.record)
        except UNAVAILABLE:
            return view

    async def _standing_checks(
        self, candidate: Candidate, account: AccountRecord, account_uri: str
    ) -> _Checked:
        """The record, CAA and MPIC for a standing dns-persist-01 record; raises the
        problem of the first that fails."""
        ch, authz = candidate.challenge, candidate.authz
        dcv, caa = Tally(), Tally()
        context = self._account_context(account, account_uri, authz.wildcard)
        with dcv.counting():
            until = await self.validator.validate(
                ch.type, authz.identifier, ch.token, "", account=context
            )
        with caa.counting():
            await self.policy.check_caa(authz.identifier, authz.wildcard, account_uri, ch.type)
        corroboration: Corroboration | None = None
        if self.corroborator is not None:
            corroboration = await self._corroborate(
                self.corroborator, ch, authz, account, account_uri, context
            )
            if corroboration.verdict != Verdict.PASS:
                raise refusal(corroboration, authz.identifier.to_json())
        record = _evidence(corroboration, dcv, caa)
        return _Checked(until, record)

    async def _validate_standing(
        self, candidate: Candidate, account: AccountRecord, account_uri: str
    ) -> bool:
        ch, authz = candidate.challenge, candidate.authz
        try:
            async with asyncio.timeout(self.standing.timeout):
                evidence = await self._standing_checks(candidate, account, account_uri)
            now = self.now()
            # The same steps as an answered challenge: it is recorded as validated now,
            # under the account URL asked with (a later CAA recheck names it).
            if not self.store.orders.start_challenge(ch.id, now, account_uri):
                return False
            expires = self._valid_until(authz, now, evidence.until)
            self.store.orders.finish_challenge(ch.id, now, None, expires, evidence.record)
        except AcmeError as exc:
            why = exc.problem.type
        except TimeoutError:
            why = f"no answer within {self.standing.timeout} s"
        except Exception as exc:  # a lookup that went wrong leaves the challenge to the client
            why = type(exc).__name__
        else:
            log.info(
                "dns-persist-01 just-in-time: authorization %s for %s (account %s) valid "
                "from its standing record",
                authz.id, authz.identifier.value, account.id,
            )  # fmt: skip
            return True
        log.info(
            "dns-persist-01 just-in-time: authorization %s for %s (account %s) stays "
            "pending: %s",
            authz.id, authz.identifier.value, account.id, why,
        )  # fmt: skip
        return False

    async def _corroborate(
        self,
        corroborator: Corroborator,
        ch: ChallengeRecord,
        authz: AuthorizationRecord,
        account: AccountRecord,
        account_uri: str,
        context: AccountContext | None,
    ) -> Corroboration:
        """BR §3.2.2.9: the primary (this CA) validated and checked CAA; the remote
        perspectives must corroborate both. The outcome is logged here and recorded on
        the authorization with the validation's; without a quorum the validation fails.
        dns-persist-01 and dns-account-01 send the account context the primary checked
        with (same `now`)."""
        request = CorroborationRequest(
            type=ch.type,
            identifier=authz.identifier,
            wildcard=authz.wildcard,
            token=ch.token,
            key_authorization=key_authorization(ch.token, account.jwk),
            account_uri=account_uri,
            caa_identities=self.config.caa_identities if self.config.caa.enabled else None,
            account=context,
        )
        outcome = await corroborator.corroborate(request)
        log.info(
            "mpic for authorization %s (%s): %s, quorum %s: %s",
            authz.id, authz.identifier.value, outcome.verdict, outcome.quorum, outcome.summary(),
        )  # fmt: skip
        return outcome

    async def _corroborate_caa(
        self,
        corroborator: Corroborator,
        authz: AuthorizationRecord,
        ch: ChallengeRecord,
        account_uri: str,
    ) -> None:
        """CAA rechecked at finalize is corroborated like the first check (BR §3.2.2.9);
        logged, and refused without a quorum. The authorization keeps the record of its
        validation's corroboration."""
        request = CorroborationRequest(
            type=ch.type,
            identifier=authz.identifier,
            wildcard=authz.wildcard,
            token=ch.token,
            key_authorization="",
            account_uri=account_uri,
            caa_identities=self.config.caa_identities,
            validate=False,
        )
        outcome = await corroborator.corroborate(request)
        log.info(
            "mpic CAA recheck for authorization %s (%s): %s, quorum %s: %s",
            authz.id, authz.identifier.value, outcome.verdict, outcome.quorum, outcome.summary(),
        )  # fmt: skip
        if outcome.verdict != Verdict.PASS:
            raise refusal(outcome, authz.identifier.to_json(), "the CAA recheck")

    def _account_context(
        self, account: AccountRecord, account_uri: str, wildcard: bool, bound: bool = True
    ) -> AccountContext:
        """What dns-account-01 and dns-persist-01 check against: the current key first,
        then the keys it replaced, the most recent first (draft-ietf-acme-dns-persist-02
        §4.2; kept since this CA began keeping them). Other challenges (not `bound`) use
        only the account URL: the replaced keys are not read for them."""
        base = account_uri.removesuffix(paths.ACCOUNT.path(account.id))
        prior = self.store.accounts.prior_thumbprints(account.id) if bound else []
        return AccountContext(
            account_url=account_uri,
            thumbprints=(thumbprint(account.jwk), *prior),
            issuer_domain_names=self.config.persist_issuers,
            account_hash_prefix=self.config.persist_hash_prefix(base),
            wildcard=wildcard,
            now=int(self.now().timestamp()),
        )

    def _counts_failures(self, authz: AuthorizationRecord) -> bool:
        """Failed validations are limited, except in a renewal (RFC 9773 §5)."""
        return self.limits.enabled and not authz.in_renewal

    @staticmethod
    def _failure_subject(authz: AuthorizationRecord) -> Subject:
        host = authz.identifier.value.lower()
        return Subject(f"{authz.account_id}:{host}", (authz.account_id, registered_domain(host)))

    # finalize and certificates ------------------------------------------------------

    async def finalize(
        self,
        auth: Authenticated,
        order_id: str,
        account_uri: str,
        reads: FinalizeReads | None = None,
    ) -> OrderView:
        """§7.4: check the CSR against the order, claim it once, issue. `reads`: the
        order's and the blocklist's for the CSR's key, sent with the request's account
        read (`finalize_reads`)."""
        account, payload = auth.require_account(), auth.payload
        ahead, blocked = (None, None) if reads is None else (reads.order, reads.blocked)
        view = self.owned_order_view(account, order_id, ahead)
        order = view.record
        if view.status != OrderStatus.READY:
            raise problem(ProblemType.ORDER_NOT_READY, f"order is {view.status}, not ready")
        if not isinstance(payload, dict) or not isinstance(payload.get("csr"), str):
            raise malformed("finalize needs a payload with a base64url csr")
        csr_der = b64d(payload["csr"])
        # The account key as authentication parsed it (cached per key), not parsed again.
        key_check = self.policy.certificate_key_check(blocked)
        csr = check_csr(csr_der, order.identifiers, auth.key, key_check)
        await self._recheck_caa(view, account_uri)
        try:
            # The order is claimed only when its certificate can be signed now: with the
            # key's token away it stays `ready`, for the client to finalize again.
            self.issuer.check_signer()
        except SignerUnavailable as exc:
            raise signer_unavailable(exc) from None
        now = self.now()
        rec = self._reservation(order, self._profile_of_order(order), now)
        await self._off_loop(self._claim, order, csr_der, now, rec)
        task = self._spawn(self._issue(order, csr, rec, reserved=True))
        await asyncio.wait({task}, timeout=self.finalize_wait)
        if not task.done():  # processing: the client polls
            done: OrderRecord | None = replace(order, csr=csr_der, finalize_started=now)
        elif not task.cancelled() and task.exception() is None and task.result() is True:
            # This issuance recorded its certificate; nothing else writes a claimed
            # order, so the row is known without reading it back (one `replace`: each
            # is some 7 µs for a record of fourteen fields).
            done = replace(order, csr=csr_der, finalize_started=now, certificate_id=rec.id)
        else:  # failed, refused or left for recovery: as stored
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                log.error("issuance for order %s failed", order.id, exc_info=failure)
            done = self.store.orders.order(order.id)
        assert done is not None
        return self.order_view(done, [a.record for a in view.authzs])

    async def _recheck_caa(self, view: OrderView, account_uri: str) -> None:
        """Baseline requirements: CAA older than `recheck_after` is looked at again."""
        horizon = self.now() - self.policy.caa_recheck_after
        for authz in view.authzs:
            valid = [c for c in authz.record.challenges if c.validated is not None]
            if valid and valid[0].validated is not None and valid[0].validated < horizon:
                rec = authz.record
                await self.policy.check_caa(
                    rec.identifier, rec.wildcard, account_uri, valid[0].type
                )
                if self.corroborator is not None and self.config.caa.enabled:
                    await self._corroborate_caa(self.corroborator, rec, valid[0], account_uri)

    def _fail(self, order: OrderRecord, failure: Problem) -> None:
        """The order invalid, its serial abandoned, and the issuance limits taken when it
        was claimed given back: no certificate was issued."""
        self.store.certificates.abandon_reservations(order.id)
        # Refunded only by the failure that made the order invalid: an issuance retaken
        # by recovery may fail after another completed the order, or after another
        # failed it, and each extra refund would be a certificate beyond the limits.
        if self.store.orders.fail_order(order.id, failure.to_json()):
            self._refund_issuance_limits(order)

    def _reservation(
        self, order: OrderRecord, profile: Profile, now: datetime
    ) -> CertificateRecord:
        """A new serial for `order`'s certificate, not yet signed (pem None)."""
        not_before = now - BACKDATE
        return CertificateRecord(
            id=new_id(),
            serial=format(new_serial(), "x"),
            order_id=order.id,
            account_id=order.account_id,
            pem=None,
            identifiers=order.identifiers,
            not_before=not_before,
            not_after=not_before + profile.certificate_lifetime,
            issued=now,
        )

    async def _issue(
        self,
        order: OrderRecord,
        csr: x509.CertificateSigningRequest,
        rec: CertificateRecord | None = None,
        reserved: bool = False,
    ) -> bool:
        """Sign `order`'s certificate; what issuance reads of the order (names, account,
        profile, replaces) does not change once it is claimed. `rec`, `reserved`: a
        reservation already recorded (with the claim; or one whose precertificate is
        signed already (CT), finished under its own serial); otherwise one is reserved
        here. True if this certificate completed the order."""
        profile = self._profile_of_order(order)
        rec = rec or self._reservation(order, profile, self.now())
        ct = self.ct
        scts: list[SignedCertificateTimestamp] = []
        try:
            if not reserved:
                await self._off_loop(self.store.certificates.reserve_serial, rec)
            if ct is None:
                cert = await self.sign(
                    csr,
                    order.identifiers,
                    int(rec.serial, 16),
                    rec.not_before,
                    rec.not_after,
                    profile,
                )
            else:
                cert, scts = await self._sign_logged(ct, rec, csr, profile)
            pem = pem_chain(cert, self.issuer)
            recorded = await self._off_loop(
                self.store.certificates.record_issued, rec.id, order.id, pem
            )
        except _WAITS:
            raise  # the order stays claimed; recovery resumes a signed precertificate, or
            # abandons the serial and issues again
        except Exception as exc:
            if isinstance(exc, AcmeError):  # a refusal with its own problem (a failed lint)
                log.error("issuance for order %s refused: %s", order.id, exc.problem.detail)
                failure = exc.problem
            else:
                log.exception("issuance for order %s failed", order.id)
                detail = f"issuance failed: {exc}"
                failure = Problem(str(ProblemType.SERVER_INTERNAL), detail, 500)
            await self._off_loop(self._fail, order, failure)
            return False
        log.info(
            "order %s (account %s) issued serial %s for %s",
            order.id, order.account_id, rec.serial, ", ".join(i.value for i in order.identifiers),
        )  # fmt: skip
        if ct is not None:
            self._spawn(ct.submit_final(cert, self._ct_chain, scts))
        # False: another process completed the order first, and this serial is abandoned.
        return recorded

    def _claim(
        self, order: OrderRecord, csr_der: bytes, now: datetime, rec: CertificateRecord
    ) -> None:
        """In one transaction: the issuance limits taken, the order claimed and its
        serial reserved. newOrder only checks the limits (nothing is taken there), so
        orders opened together would all pass it; here one atomic take per bucket, and a
        refusal (429, Retry-After) or a lost claim rolls back every take, leaving the
        order as it was."""
        claim = self.store.orders.claim_finalize
        if order.replaces is not None or not self.limits.enabled:
            # Nothing to take: the claim alone (on PostgreSQL one statement in
            # autocommit, where a transaction costs two round trips more).
            if not claim(order.id, csr_der, now, rec):
                raise _finalizing_already()
            return
        self._take_and_claim(order, csr_der, now, rec)

    def _take_and_claim(
        self, order: OrderRecord, csr_der: bytes, now: datetime, rec: CertificateRecord
    ) -> None:
        """`_claim`'s transaction: the takes, then the claim (a lost claim raises,
        rolling the takes back). On PostgreSQL the claim is sent with the takes, in
        their round trip, and a refused take rolls it back with them."""
        orders = self.store.orders
        subjects = self._issuance_subjects(order.account_id, order.identifiers)
        together = orders.claim_statement(order.id, csr_der, now, rec)
        with self.store.transaction(begin_later=together is not None) as c:
            if together is not None:  # BEGIN, the takes and the claim: one round trip
                won = claimed(self.limits.take_all_then(subjects, now, c, together))
            else:  # the claim's insert follows its update's answer
                self.limits.take_all(subjects, now, c)
                won = orders.claim_finalize(order.id, csr_der, now, rec, c)
            if not won:
                raise _finalizing_already()

    def _refund_issuance_limits(self, order: OrderRecord) -> None:
        """Give back what `_claim` took: no certificate was issued."""
        if order.replaces is not None or not self.limits.enabled:
            return
        now = self.now()
        for name, subject in self._issuance_subjects(order.account_id, order.identifiers):
            self.limits.refund(name, subject, now)

    def _profile_of_order(self, order: OrderRecord) -> Profile:
        name = order.profile or self.config.default_profile
        return self.profiles.get(name) or self.profiles[self.config.default_profile]

    def certificate_pem(self, cert_id: str) -> str:
        pem = self.store.certificates.pem(cert_id)
        if pem is None:
            raise not_found(f"no certificate {cert_id}")
        return pem

    def revoke(self, auth: Authenticated, payload: object) -> None:
        """§7.6: by the account that holds it or authorizations for it, or by its key."""
        if not isinstance(payload, dict) or not isinstance(payload.get("certificate"), str):
            raise malformed("revokeCert needs a base64url certificate")
        try:
            cert = x509.load_der_x509_certificate(b64d(payload["certificate"]))
        except ValueError as exc:
            raise malformed(f"certificate is not valid DER: {exc}") from exc
        rec = self.store.certificates.certificate_by_serial(format(cert.serial_number, "x"))
        # A precertificate counts as issued (RFC 6962 §3.1; Baseline Requirements
        # §7.1.2.9): it may be revoked as its certificate, and its serial then is on a CRL.
        issued = rec is not None and (
            (
                rec.pem is not None
                and cert.public_bytes(serialization.Encoding.PEM).decode() in rec.pem
            )
            or (
                rec.precert is not None
                and cert.public_bytes(serialization.Encoding.DER) == rec.precert
            )
        )
        if rec is None or not issued:
            raise not_found("this CA did not issue that certificate")
        reason = payload.get("reason", 0)
        if not isinstance(reason, int) or reason not in SUBSCRIBER_REASONS:
            allowed = ", ".join(str(r) for r in sorted(SUBSCRIBER_REASONS))
            raise problem(
                ProblemType.BAD_REVOCATION_REASON,
                f"reason {reason!r} is not allowed; use one of {allowed}",
            )
        self._check_revoker(auth, rec, cert)
        if (
            reason == KEY_COMPROMISE
            and auth.account is not None
            and rec.account_id != auth.account.id
        ):
            # §7.6 lets the CA refuse reasons. An account that holds authorizations for
            # the names, but did not order the certificate, proves nothing about its key,
            # and keyCompromise puts that key on the blocklist for every certificate and
            # account: the subscriber's other certificates' key too (as Let's Encrypt,
            # only a request signed by the key itself may say the key is compromised).
            raise problem(
                ProblemType.BAD_REVOCATION_REASON,
                "keyCompromise of a certificate another account ordered needs a request "
                "signed by the certificate's key",
            )
        # keyCompromise: the key blocked in the revocation's own commit (`revoke`).
        block = self.policy.key_to_block(cert.public_key(), reason, rec.serial)  # type: ignore[arg-type]
        if not self.store.certificates.revoke(rec.id, reason, self.now(), block):
            raise problem(ProblemType.ALREADY_REVOKED, "certificate is already revoked")
        log.info("revoked serial %s reason %d", rec.serial, reason)
        if self.crl is not None:
            self.crl.revoked(cert.serial_number)

    def renewal_info(self, text: str) -> ari.Window:
        """RFC 9773 §4.2: the suggested window for the certificate `text` names."""
        rec = self._certificate_by_cert_id(ari.parse_cert_id(text))
        if rec is None:
            raise not_found(f"no certificate {text}")
        if rec.revoked_at is not None:
            return ari.revoked_window(self.now())
        moved = self.store.certificates.ari_window_start(rec.id)
        if moved is not None:
            return ari.moved_window(moved)
        return ari.suggested_window(rec.not_before, rec.not_after)

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

    async def recover(self, account_uri: Callable[[str], str]) -> None:
        """Finish validations and issuances that a stopped process left in flight. A
        validation is checked against the account URL its client used, kept with the
        challenge; `account_uri` (by account id) serves only those started before the
        URL was kept (schema revision 0003)."""
        now = self.now()
        cutoff = now - self.stale_after
        for ch in self.store.orders.stale_challenges(cutoff):
            authz = self.store.orders.authorization(ch.authz_id)
            account = self.store.accounts.account(authz.account_id) if authz else None
            if (
                authz
                and account
                and ch.started
                and self.store.orders.restart_challenge(ch.id, ch.started, now)
            ):
                uri = ch.account_uri or account_uri(account.id)
                self._spawn_validation(ch, authz, account, uri)
        stale = self.store.orders.stale_finalizations(cutoff)
        if stale:
            try:
                self.issuer.check_signer()
            except SignerUnavailable:
                return  # issuances wait for the key's token; taken up once it is back
        for order in stale:
            if (
                order.finalize_started
                and order.csr
                and self.store.orders.retake_finalize(order.id, order.finalize_started, now)
            ):
                # A signed precertificate is an issued serial: finished, not abandoned.
                kept = self.store.certificates.precert_reservation(order.id)
                if kept is None or self.ct is None:
                    self.store.certificates.abandon_reservations(order.id)
                    kept = None
                csr = x509.load_der_x509_csr(order.csr)
                self._spawn(self._issue(order, csr, kept, reserved=kept is not None))
                log.warning("resumed issuance of order %s", order.id)


def _undecided(order: OrderRecord) -> bool:
    """Whether the order's status is read from its authorizations (RFC 8555 §7.1.6)."""
    return order.certificate_id is None and order.error is None and order.finalize_started is None


def _gone(order: OrderRecord, records: Sequence[AuthorizationRecord]) -> list[AuthorizationStatus]:
    """An expired status for each authorization the order names that is no longer
    stored (purged, server/purge.py): one that is gone is not valid, so the order can
    never be ready without it."""
    found = {rec.id for rec in records}
    return [AuthorizationStatus.EXPIRED for i in order.authz_ids if i not in found]


def _evidence(corroboration: Corroboration | None, dcv: Tally, caa: Tally) -> ValidationEvidence:
    """How a validation was made, as stored on its authorization: the perspectives'
    quorum and answers (BR §3.2.2.9), and whether its DNS answers were authenticated."""
    return ValidationEvidence(
        mpic_quorum=corroboration.quorum if corroboration else None,
        mpic_perspectives=(
            tuple(r.to_json() for r in corroboration.results) if corroboration else None
        ),
        dnssec_dcv=dcv.authenticated,
        dnssec_caa=caa.authenticated,
    )


def _dnssec_note(evidence: ValidationEvidence) -> str:
    """For the challenge's log line: `; DNSSEC dcv secure, caa insecure`, or nothing when
    DNSSEC was not asked about."""
    parts = [
        f"{what} {'secure' if flag else 'insecure'}"
        for what, flag in (("dcv", evidence.dnssec_dcv), ("caa", evidence.dnssec_caa))
        if flag is not None
    ]
    return f"; DNSSEC {', '.join(parts)}" if parts else ""

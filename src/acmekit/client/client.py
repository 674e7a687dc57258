"""The ACME client: one method per protocol step, and `issue`, the whole order flow.

Plumbing (directory, nonces, signing, badNonce, problem documents) lives in
`AcmeChannel`; here are the steps of RFC 8555 §7.3 (accounts), §7.4 (orders and
finalization), §7.5 (authorizations and challenges), §7.6 (revocation), each a short
method returning a frozen snapshot of the resource.

`issue` is the porcelain (certmagic/acmez keep it apart in the same way): new order;
for each pending authorization pick a challenge type the solver map can solve, present
them all, let each solver `wait` once, answer them all, poll each with intervals that
start short and grow, and always clean up. Authorizations that come back already valid
(a CA may reuse them) are skipped. Then finalize, poll the order, download the chain.
A chain is kept only as the certificates it holds, re-encoded (nothing else the server
sent reaches a file), and its leaf must carry the CSR's key and every ordered name;
alternate chains are fetched only from the certificate's own origin, at most
`MAX_ALTERNATES` of them.
When authorizing fails, the order's authorizations still pending are deactivated.
A failed authorization raises one AcmeError whose subproblems name each failed
identifier; what fails on this side raises a ClientError (see `errors`). Many
`issue` calls may run at once on one event loop with one Client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from acmekit.client.channel import (
    BAD_NONCE_RETRIES,
    PEM_CHAIN,
    UNAVAILABLE_MAX_WAIT,
    AcmeChannel,
    json_object,
    location,
)
from acmekit.client.errors import (
    NoAccount,
    NoUsableChallenge,
    OrderNotValid,
    ServerProtocolError,
)
from acmekit.client.persist import PersistRecordText, make_record
from acmekit.client.resources import (
    Account,
    Authorization,
    Challenge,
    Directory,
    IssuedCertificate,
    Order,
    RenewalInfo,
)
from acmekit.client.retry import DEFAULT_BACKOFF, Backoff, poll
from acmekit.client.solvers import Solver, Waiter
from acmekit.client.solvers.accountbound import AccountAware, AccountInfo
from acmekit.client.transport import AiohttpTransport, HttpTransport
from acmekit.clock import Clock, SystemClock
from acmekit.lifecycle import AsyncClosing
from acmekit.protocol.ari import cert_id_of
from acmekit.protocol.challenges import key_authorization, token_is_wellformed
from acmekit.protocol.jose import PrivateKey, b64d, b64e, eab_sign, jwk_from_key, sign
from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
    OrderStatus,
    ascii_lower,
)
from acmekit.protocol.problems import AcmeError, Problem, ProblemType

log = logging.getLogger(__name__)
T = TypeVar("T")

# Alternate chains (RFC 8555 §7.4.2) fetched at most: a CA offers one or two.
MAX_ALTERNATES = 8


@dataclass(frozen=True)
class ExternalAccountBinding:
    """§7.3.4: the key identifier and MAC key a CA handed out of band."""

    kid: str
    hmac_key: bytes = field(repr=False)

    @classmethod
    def from_base64url(cls, kid: str, hmac_key_b64: str) -> ExternalAccountBinding:
        """The usual form of `--eab-hmac-key`: base64url, padding tolerated."""
        return cls(kid, b64d(hmac_key_b64.rstrip("=")))


def as_identifier(value: Identifier | str) -> Identifier:
    """A name or IP address as an identifier (RFC 8738 for IPs)."""
    if isinstance(value, Identifier):
        return value
    try:
        return Identifier(IdentifierType.IP, ipaddress.ip_address(value).compressed)
    except ValueError:
        # As given if not ASCII, for the CA to refuse: folded, a name with the Kelvin sign
        # (U+212A) would order "k..." instead, a name not asked for.
        return Identifier(IdentifierType.DNS, ascii_lower(value))


def describe_failures(err: AcmeError) -> list[str]:
    """One readable line per failed identifier (or the one line when there are none)."""
    subs = err.problem.subproblems
    if not subs:
        return [err.problem.describe()]
    return [f"{(s.identifier or {}).get('value', '?')}: {s.describe()}" for s in subs]


class Client(AsyncClosing):
    """An ACME account's view of one CA. Use as `async with Client(url, key) as c:`.

    `account_url` is known after `register` (or given, for an existing account). The
    transport is closed on exit only when the Client made it.
    """

    def __init__(
        self,
        directory_url: str,
        account_key: PrivateKey,
        *,
        transport: HttpTransport | None = None,
        clock: Clock | None = None,
        account_url: str | None = None,
        ca_bundle: str | None = None,
        poll_timeout: float = 300.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        bad_nonce_retries: int = BAD_NONCE_RETRIES,
        user_agent: str | None = None,
        issuance_timeout: float | None = None,
    ) -> None:
        """`user_agent` is sent as User-Agent (RFC 8555 §6.1); `issuance_timeout`
        bounds the wait for the certificate after finalize (default `poll_timeout`)."""
        self._own_transport: AiohttpTransport | None = None
        if transport is None:
            transport = self._own_transport = AiohttpTransport(
                ca_bundle, product=user_agent or "acmekit"
            )
        self.channel = AcmeChannel(
            directory_url,
            transport,
            clock or SystemClock(),
            bad_nonce_retries=bad_nonce_retries,
        )
        self.account_key = account_key
        self.account_url = account_url
        self.poll_timeout = poll_timeout
        self.issuance_timeout = issuance_timeout
        self.backoff = backoff

    async def close(self) -> None:
        if self._own_transport is not None:
            await self._own_transport.close()

    async def directory(self) -> Directory:
        return await self.channel.directory()

    def _kid(self) -> str:
        if self.account_url is None:
            raise NoAccount("no account: register first")
        return self.account_url

    async def _post(self, url: str, payload: Any) -> tuple[dict[str, Any], float | None]:
        resp = await self.channel.post(url, payload, key=self.account_key, kid=self._kid())
        return json_object(resp), self.channel.retry_after(resp)

    # -- accounts (§7.3) -------------------------------------------------------------

    async def register(
        self,
        contact: Sequence[str] = (),
        agree_tos: bool = True,
        eab: ExternalAccountBinding | None = None,
        only_return_existing: bool = False,
    ) -> Account:
        """newAccount (§7.3); with `only_return_existing`, find the key's account."""
        url = (await self.directory()).new_account
        payload: dict[str, Any] = {"termsOfServiceAgreed": agree_tos}
        if contact:
            payload["contact"] = list(contact)
        if only_return_existing:
            payload = {"onlyReturnExisting": True}
        if eab is not None:
            payload["externalAccountBinding"] = eab_sign(
                self.account_key, eab.kid, eab.hmac_key, url
            )
        resp = await self.channel.post(url, payload, key=self.account_key, kid=None)
        account = Account.from_json(location(resp), json_object(resp))
        self.account_url = account.url
        log.info("account %s (%s)", account.url, account.status)
        return account

    async def account_info(self) -> AccountInfo:
        """What account-bound solvers need: the account and the directory's
        dns-persist-01 values (draft-ietf-acme-dns-persist-02 §3.2)."""
        directory = await self.directory()
        return AccountInfo(
            self._kid(),
            self.account_key,
            directory.account_hash_prefix,
            directory.issuer_domain_names,
        )

    async def persist_record(
        self,
        domain: str,
        *,
        wildcard: bool = False,
        persist_until: int | None = None,
        issuer: str | None = None,
        any_domain: bool = False,
    ) -> PersistRecordText:
        """The dns-persist-01 record for `domain`, made from the directory and the
        account alone, before any order (draft-ietf-acme-dns-persist-02 §4.5)."""
        info = await self.account_info()
        return make_record(
            domain,
            account_url=info.account_url,
            account_key=self.account_key,
            account_hash_prefix=info.account_hash_prefix,
            issuers=info.issuer_domain_names,
            wildcard=wildcard,
            persist_until=persist_until,
            issuer=issuer,
            any_domain=any_domain,
        )

    async def account(self) -> Account:
        """The account as the server has it now (POST-as-GET to the account URL)."""
        doc, _ = await self._post(self._kid(), None)
        return Account.from_json(self._kid(), doc)

    async def update_account(self, contact: Sequence[str]) -> Account:
        doc, _ = await self._post(self._kid(), {"contact": list(contact)})
        return Account.from_json(self._kid(), doc)

    async def deactivate_account(self) -> Account:
        """§7.3.6: after this the server refuses every request from this account."""
        doc, _ = await self._post(self._kid(), {"status": "deactivated"})
        log.info("account %s deactivated", self._kid())
        return Account.from_json(self._kid(), doc)

    async def key_change(self, new_key: PrivateKey) -> None:
        """§7.3.5: roll the account over to `new_key`; later requests are signed by it."""
        url = (await self.directory()).key_change
        inner_payload = {"account": self._kid(), "oldKey": jwk_from_key(self.account_key)}
        inner = sign(new_key, inner_payload, url=url, nonce=None)
        await self.channel.post(url, inner, key=self.account_key, kid=self._kid())
        self.account_key = new_key
        log.info("account %s changed key", self._kid())

    # -- orders, authorizations, challenges (§7.4, §7.5) -------------------------------

    async def new_order(
        self,
        identifiers: Iterable[Identifier | str],
        *,
        profile: str | None = None,
        replaces: str | None = None,
    ) -> Order:
        url = (await self.directory()).new_order
        asked = [as_identifier(i) for i in identifiers]
        payload: dict[str, Any] = {"identifiers": [i.to_json() for i in asked]}
        if profile is not None:
            payload["profile"] = profile
        if replaces is not None:
            payload["replaces"] = replaces
        resp = await self.channel.post(url, payload, key=self.account_key, kid=self._kid())
        order = Order.from_json(location(resp), json_object(resp))
        if _spelled(order.identifiers) != _spelled(asked):
            # §7.4: the order is for the identifiers asked; what is authorized, presented
            # and checked in the certificate is then read from the order
            raise ServerProtocolError(f"{order.url}: the order is not for the names asked")
        log.info("order %s for %d identifiers", order.url, len(order.identifiers))
        return order

    async def _fetch_order(self, url: str) -> tuple[Order, float | None]:
        doc, after = await self._post(url, None)
        return Order.from_json(url, doc), after

    async def order(self, url: str) -> Order:
        return (await self._fetch_order(url))[0]

    async def _fetch_authorization(self, url: str) -> tuple[Authorization, float | None]:
        doc, after = await self._post(url, None)
        return Authorization.from_json(url, doc), after

    async def authorization(self, url: str) -> Authorization:
        return (await self._fetch_authorization(url))[0]

    async def authorizations(self, order: Order) -> list[Authorization]:
        return await _all(self.authorization(u) for u in order.authorizations)

    async def answer_challenge(self, challenge: Challenge) -> Challenge:
        """§7.5.1: tell the server to validate (an empty JSON object).

        A `rateLimited` answer with a short Retry-After (§6.6) is sent again when it
        says, within `poll_timeout`: a CA may cap the validations one account runs at
        once (ours at an order's worth), so orders of one account answered together
        (a fleet's) find the cap full for a few seconds. Raised at once, that failed
        the order, and its solver's cleanup then failed the validations already
        under way beside it. A longer wait (a failed-validations limit) is raised."""
        deadline = self.channel.clock.now() + timedelta(seconds=self.poll_timeout)
        while True:
            try:
                doc, _ = await self._post(challenge.url, {})
            except AcmeError as exc:
                wait = exc.problem.retry_after
                if exc.problem.type != ProblemType.RATE_LIMITED or wait is None:
                    raise
                remaining = (deadline - self.channel.clock.now()).total_seconds()
                if wait > min(UNAVAILABLE_MAX_WAIT, remaining):
                    raise
                log.info("challenge %s: rate limited, answered again in %d s", challenge.url, wait)
                await self.channel.clock.sleep(max(wait, 1))
                continue
            return Challenge.from_json(doc)

    async def decided_elsewhere(self, authz: Authorization) -> Authorization | None:
        """After the CA refused an answer to one of `authz`'s challenges: the
        authorization as another answer decides it, or None when none does (the refusal
        stands). Another order sharing the authorization may have answered it first:
        it is decided already, or another of its challenges is being validated, which
        then decides it (§7.1.6; a CA may refuse a second, as ours does), polled until
        it has. Raised instead, the order failed, and its relinquishing deactivated the
        authorization under the other order too."""
        again = await self.authorization(authz.url)
        if again.status != AuthorizationStatus.PENDING:
            return again
        if not any(c.status == ChallengeStatus.PROCESSING for c in again.challenges):
            return None
        return await self.poll_authorization(again)

    async def deactivate_authorization(self, authz: Authorization) -> Authorization:
        doc, _ = await self._post(authz.url, {"status": "deactivated"})
        return Authorization.from_json(authz.url, doc)

    async def poll_authorization(
        self,
        authz: Authorization | str,
        *,
        max_wait: float | None = None,
        wait_first: bool = False,
    ) -> Authorization:
        """Poll until the authorization is no longer pending (§7.5.1); with
        `wait_first` (just after answering its challenge), wait one backoff step first."""
        url = authz if isinstance(authz, str) else authz.url
        return await poll(
            lambda: self._fetch_authorization(url),
            lambda a: a.status != AuthorizationStatus.PENDING,
            clock=self.channel.clock,
            max_wait=self.poll_timeout if max_wait is None else max_wait,
            backoff=self.backoff,
            what=f"authorization {url}",
            wait_first=wait_first,
        )

    async def finalize(self, order: Order, csr_der: bytes) -> Order:
        """§7.4: send the CSR; the answer is the order, usually processing or valid."""
        doc, _ = await self._post(order.finalize, {"csr": b64e(csr_der)})
        log.info("order %s finalized", order.url)
        return Order.from_json(order.url, doc)

    async def poll_order(self, order: Order | str, *, max_wait: float | None = None) -> Order:
        """Poll until the order is neither pending nor processing (§7.4)."""
        url = order if isinstance(order, str) else order.url
        return await poll(
            lambda: self._fetch_order(url),
            lambda o: o.status not in (OrderStatus.PENDING, OrderStatus.PROCESSING),
            clock=self.channel.clock,
            max_wait=self.poll_timeout if max_wait is None else max_wait,
            backoff=self.backoff,
            what=f"order {url}",
        )

    # -- certificates (§7.4.2, §7.6) ----------------------------------------------------

    async def _download(self, url: str) -> tuple[str, tuple[str, ...]]:
        resp = await self.channel.post(
            url, None, key=self.account_key, kid=self._kid(), accept=PEM_CHAIN
        )
        origin = urlsplit(url)[:2]
        alternates = [u for u in resp.links("alternate") if urlsplit(u)[:2] == origin]
        return pem_chain(resp.body, url), tuple(alternates[:MAX_ALTERNATES])

    async def download_certificate(self, url: str) -> str:
        """The PEM chain, leaf first, that the server offers by default."""
        return (await self._download(url))[0]

    async def certificate_chains(self, url: str) -> list[tuple[str, str]]:
        """(url, PEM chain) for the default chain and each rel="alternate" one."""
        pem, alternates = await self._download(url)
        others = await _all(self.download_certificate(u) for u in alternates)
        return [(url, pem), *zip(alternates, others, strict=True)]

    async def renewal_info(self, cert: x509.Certificate) -> RenewalInfo | None:
        """RFC 9773: the CA's suggested renewal window, or None if it offers none."""
        base = (await self.directory()).renewal_info
        if base is None:
            return None
        resp = await self.channel.get(f"{base.rstrip('/')}/{cert_id_of(cert)}")
        return RenewalInfo.from_json(json_object(resp), self.channel.retry_after(resp))

    async def revoke(self, cert_der: bytes, reason: int = 0, key: PrivateKey | None = None) -> None:
        """§7.6: revoke as the account, or (with `key`) as the certificate's key holder."""
        url = (await self.directory()).revoke_cert
        payload = {"certificate": b64e(cert_der), "reason": reason}
        if key is None:
            await self.channel.post(url, payload, key=self.account_key, kid=self._kid())
        else:
            await self.channel.post(url, payload, key=key, kid=None)
        log.info("certificate revoked (reason %d)", reason)

    # -- the whole flow -----------------------------------------------------------------

    async def issue(
        self,
        identifiers: Iterable[Identifier | str],
        solvers: Mapping[ChallengeType, Solver],
        csr_der: bytes,
        *,
        preference: Sequence[ChallengeType] | None = None,
        profile: str | None = None,
        replaces: str | None = None,
        preferred_chain: str | None = None,
        fresh: bool = False,
    ) -> IssuedCertificate:
        """Order, authorize, finalize, download. `preference` orders challenge types
        (default: the order of `solvers`); `preferred_chain` picks, by issuer common
        name of its topmost certificate, among the server's alternate chains. `fresh`
        (a test run) has every name proven anew, as certbot's --dry-run does: valid
        authorizations the CA reused are deactivated (§7.5.2) and the order made again."""
        identifiers = list(identifiers)
        order, replaces = await self.new_replacement_order(
            identifiers, profile=profile, replaces=replaces
        )
        if fresh and await self._deactivate_valid(order):
            order = await self.new_order(identifiers, profile=profile, replaces=replaces)
        try:
            await self._authorize(order, solvers, preference or tuple(solvers))
        except (Exception, asyncio.CancelledError):  # Ctrl-C and SIGTERM cancel the task
            await self._relinquish(order)
            raise
        order = await self.poll_order(order)
        if order.status == OrderStatus.READY:
            finalized = await self.finalize(order, csr_der)
            order = await self.poll_order(finalized, max_wait=self.issuance_timeout)
        if order.status != OrderStatus.VALID or order.certificate is None:
            raise order_failure(order)
        pem, alternates = await self._pick_chain(order.certificate, preferred_chain)
        check_leaf(pem, csr_der, order.identifiers, order.certificate)
        log.info("order %s valid, certificate %s", order.url, order.certificate)
        return IssuedCertificate(order, pem, order.certificate, alternates)

    async def new_replacement_order(
        self,
        identifiers: Iterable[Identifier | str],
        *,
        profile: str | None = None,
        replaces: str | None = None,
    ) -> tuple[Order, str | None]:
        """A new order naming `replaces`, and, if the CA answers that the certificate is
        already replaced, the same order once more without it (RFC 9773 §5 lets a client
        do so; the CA then counts it as any new order). The claim may be held by a
        replacement this client never saw (a config dir restored from a backup, a run
        killed after issuance) or by an order a killed run left ready: a lineage must
        not be kept from renewing for ever by any of them. The order, and what it names."""
        identifiers = list(identifiers)
        try:
            return await self.new_order(identifiers, profile=profile, replaces=replaces), replaces
        except AcmeError as exc:
            if replaces is None or exc.problem.type != ProblemType.ALREADY_REPLACED:
                raise
            log.warning(
                "certificate %s is already replaced (%s); ordering without `replaces`",
                replaces,
                exc.problem.detail,
            )
        return await self.new_order(identifiers, profile=profile), None

    async def _deactivate_valid(self, order: Order) -> bool:
        """Deactivate the order's valid authorizations; whether there were any."""
        authzs = await self.authorizations(order)
        valid = [a for a in authzs if a.status == AuthorizationStatus.VALID]
        for authz in valid:
            await self.deactivate_authorization(authz)
        if valid:
            log.info("order %s: %d reused authorization(s) deactivated", order.url, len(valid))
        return bool(valid)

    async def _relinquish(self, order: Order) -> None:
        """§7.5.2: deactivate what a failed order left pending, as acmez does, so that no
        half-solved authorization lingers at the CA. Best effort: the order's own failure
        is what the caller hears about."""
        try:
            authzs = await self.authorizations(order)
        except Exception as exc:
            log.warning("order %s: authorizations not deactivated: %s", order.url, exc)
            return
        pending = [a for a in authzs if a.status == AuthorizationStatus.PENDING]
        results = await asyncio.gather(
            *(self.deactivate_authorization(a) for a in pending), return_exceptions=True
        )
        for authz, result in zip(pending, results, strict=True):
            if isinstance(result, Exception):
                log.warning("authorization %s not deactivated: %s", authz.url, result)
            elif isinstance(result, BaseException):
                raise result

    async def _pick_chain(self, url: str, preferred: str | None) -> tuple[str, tuple[str, ...]]:
        if preferred is None:
            return await self._download(url)
        chains = await self.certificate_chains(url)
        return select_chain([c for _, c in chains], preferred), tuple(u for u, _ in chains[1:])

    async def _authorize(
        self,
        order: Order,
        solvers: Mapping[ChallengeType, Solver],
        preference: Sequence[ChallengeType],
    ) -> None:
        authzs = await self.authorizations(order)
        _raise_failed([a for a in authzs if a.status not in _USABLE])
        pending = [a for a in authzs if a.status == AuthorizationStatus.PENDING]
        plan = [(a, choose_challenge(a, solvers, preference)) for a in pending]
        for authz, challenge in plan:
            check_presentable(order, authz, challenge)
        aware = [s for s in _distinct(solvers.values()) if isinstance(s, AccountAware)]
        if aware and plan:
            info = await self.account_info()
            for solver in aware:
                solver.for_account(info)
        presented: list[tuple[Solver, Identifier, Challenge, str]] = []
        try:
            await _all(self._present(a, c, solvers, presented) for a, c in plan)
            await _all(_wait(s) for s in _distinct(s for s, *_ in presented))
            done = await _all(self._answer(a, c) for a, c in plan)
        finally:
            await _cleanup(presented)
        _raise_failed([a for a in done if a.status != AuthorizationStatus.VALID])

    async def _present(
        self,
        authz: Authorization,
        challenge: Challenge,
        solvers: Mapping[ChallengeType, Solver],
        presented: list[tuple[Solver, Identifier, Challenge, str]],
    ) -> None:
        kind = challenge.known_type
        assert kind is not None  # choose_challenge only picks types in `solvers`
        key_auth = key_authorization(challenge.token or "", self.account_key)
        ident = authz.identifier
        if authz.wildcard and kind == ChallengeType.DNS_PERSIST_01:
            # The record then needs policy=wildcard (draft-ietf-acme-dns-persist-02 §5).
            ident = replace(ident, value="*." + ident.value)
        await solvers[kind].present(ident, challenge, key_auth)
        presented.append((solvers[kind], ident, challenge, key_auth))

    async def _answer(self, authz: Authorization, challenge: Challenge) -> Authorization:
        """Answer the challenge and poll its authorization until it is decided; no poll
        when the answer is already `valid` (a CA may validate before it answers, §7.5.1,
        and one valid challenge makes its authorization valid, §7.1.6)."""
        try:
            answered = await self.answer_challenge(challenge)
        except AcmeError:
            decided = await self.decided_elsewhere(authz)
            if decided is None:
                raise
            return decided
        if answered.status == ChallengeStatus.VALID:
            return replace(authz, status=AuthorizationStatus.VALID)
        return await self.poll_authorization(authz)


_USABLE = (AuthorizationStatus.PENDING, AuthorizationStatus.VALID)


def choose_challenge(
    authz: Authorization,
    solvers: Mapping[ChallengeType, Solver],
    preference: Sequence[ChallengeType],
) -> Challenge:
    """The first challenge type in `preference` that the server offers and we solve."""
    offered = {c.known_type: c for c in authz.challenges if c.known_type is not None}
    for kind in preference:
        if kind in offered and kind in solvers:
            return offered[kind]
    raise NoUsableChallenge(
        authz.identifier.value,
        sorted(c.type for c in authz.challenges),
        sorted(str(k) for k in solvers),
    )


def order_failure(order: Order) -> AcmeError | OrderNotValid:
    """Why an order did not end valid: the server's `error` when it gave one (§7.1.3)."""
    if order.error is not None:
        return AcmeError(order.error)
    return OrderNotValid(order.url, order.status)


def pem_chain(body: bytes, url: str) -> str:
    """The certificates of an application/pem-certificate-chain body (RFC 8555 §9.1),
    re-encoded one after another: text around them, or blocks of other kinds, from a
    server that should not have sent them, are not passed on to the files."""
    try:
        certs = x509.load_pem_x509_certificates(body)
    except ValueError:
        raise ServerProtocolError(f"{url}: the certificate chain holds no certificate") from None
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)


def check_leaf(pem: str, csr_der: bytes, identifiers: Sequence[Identifier], url: str) -> None:
    """The issued leaf carries the CSR's public key and every ordered identifier; a
    server that sends another is not believed (its certificate would not serve)."""
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    csr = x509.load_der_x509_csr(csr_der)
    if leaf.public_key().public_bytes(*spki) != csr.public_key().public_bytes(*spki):
        raise ServerProtocolError(f"{url}: the certificate is not for the CSR's key")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ServerProtocolError(f"{url}: the certificate names no identifier") from None
    names = {ascii_lower(n) for n in san.get_values_for_type(x509.DNSName)}
    names |= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    wanted = {_same(i.value) for i in identifiers}
    for ident in identifiers:
        if _same(ident.value) not in names:
            raise ServerProtocolError(f"{url}: the certificate does not name {ident.value}")
    # Names the order did not hold would be installed too (a `server_name`), and renewed.
    extra = sorted(names - wanted)
    if extra:
        raise ServerProtocolError(f"{url}: the certificate names {extra[0]!r}, not ordered")


# Challenge types whose token goes into a file name, a URL path or a hook's environment.
_TOKENED = frozenset(
    {ChallengeType.HTTP_01, ChallengeType.DNS_01, ChallengeType.TLS_ALPN_01,
     ChallengeType.DNS_ACCOUNT_01}
)  # fmt: skip


def check_presentable(order: Order, authz: Authorization, challenge: Challenge) -> None:
    """Nothing is published for a server that asks for what the order did not: an
    authorization for another identifier (the solvers' DNS credentials publish what
    they are told), or a token that is not base64url (RFC 8555 §8.1), which a webroot
    or a manual hook would put into a path (`../`) or a file (newlines)."""
    ident = authz.identifier
    ordered = {(i.type, _same(i.base_name), i.is_wildcard) for i in order.identifiers}
    if (ident.type, _same(ident.value), authz.wildcard) not in ordered:
        raise ServerProtocolError(f"{authz.url}: authorization for {ident.value}, not ordered")
    if challenge.known_type in _TOKENED and not token_is_wellformed(challenge.token or ""):
        raise ServerProtocolError(f"{challenge.url}: malformed token {challenge.token!r}")


def _spelled(identifiers: Iterable[Identifier]) -> set[tuple[str, str]]:
    return {(i.type, _same(i.value)) for i in identifiers}


def _same(value: str) -> str:
    """One spelling of a name or an address, for comparing them."""
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        return ascii_lower(value).rstrip(".")


def select_chain(chains: Sequence[str], preferred_issuer: str) -> str:
    """certbot's --preferred-chain: the first chain whose topmost certificate's issuer
    (or subject) common name is `preferred_issuer`; the default chain otherwise."""
    for pem in chains:
        top = x509.load_pem_x509_certificates(pem.encode())[-1]
        names = [
            a.value
            for n in (top.issuer, top.subject)
            for a in n.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
        if preferred_issuer in names:
            return pem
    return chains[0]


def _raise_failed(failed: list[Authorization]) -> None:
    if not failed:
        return
    subs = tuple(a.failure() for a in failed)
    kinds = {s.type for s in subs}
    names = ", ".join(a.identifier.value for a in failed)
    raise AcmeError(
        Problem(
            type=kinds.pop() if len(kinds) == 1 else str(ProblemType.COMPOUND),
            detail=f"authorization failed for {names}",
            status=403,
            subproblems=subs,
        )
    )


async def _wait(solver: Solver) -> None:
    if isinstance(solver, Waiter):
        await solver.wait()


def _distinct(solvers: Iterable[Solver]) -> list[Solver]:
    seen: dict[int, Solver] = {}
    for s in solvers:
        seen.setdefault(id(s), s)
    return list(seen.values())


async def _cleanup(presented: list[tuple[Solver, Identifier, Challenge, str]]) -> None:
    results = await asyncio.gather(
        *(s.cleanup(i, c, k) for s, i, c, k in presented), return_exceptions=True
    )
    for (_, ident, _, _), result in zip(presented, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("cleanup for %s failed: %s", ident.value, result)


async def _all(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_run(c)) for c in coros]
    except BaseExceptionGroup as eg:
        raise _first_leaf(eg) from None
    return [t.result() for t in tasks]


async def _run(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _first_leaf(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    first = eg.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first

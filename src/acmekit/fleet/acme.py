"""Issuing through an ACME CA with the client library, resumable across workers.

A worker records the order URL (and, before that, the site's new key) in the
inventory as soon as the order exists. A worker that takes over an expired lease
resumes that order rather than opening another: this matters because an order that
`replaces` a certificate (RFC 9773 §5) holds the CA's one replacement claim for it.
The steps are the client's public ones (RFC 8555 §7.4, §7.5): fetch the order, solve
its pending authorizations, finalize when ready, poll, download.

http-01 answers live in the inventory (`DbHttpSolver`), so whichever fleet process
the CA's validation request reaches can answer it. dns-01 goes through whatever solver
is given for it (in the fleet, the client's Dns01Solver following the CNAME that
delegates `_acme-challenge.NAME` into a zone the fleet may update: see delegation.py).
A wildcard is always validated by dns-01. An http-01 order whose authorizations fail is
tried once more by dns-01 when `delegated(names)` says every name is delegated.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dns.exception import DNSException

from acmekit.client import Client, choose_challenge
from acmekit.client.client import order_failure
from acmekit.client.errors import NoUsableChallenge
from acmekit.client.resources import Authorization, Challenge, Order
from acmekit.client.solvers import Solver, Waiter
from acmekit.client.solvers.accountbound import AccountAware, DnsPersistSolver, record_text
from acmekit.client.solvers.errors import SolverError
from acmekit.fleet.capability import DNS01_HINT, FleetCannotValidate, refusal
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import OrderRequest, OrderStarted, RenewalWindow
from acmekit.fleet.model import ChallengeMethod, to_us
from acmekit.protocol.ari import cert_id_of
from acmekit.protocol.challenges import key_authorization
from acmekit.protocol.jose import PrivateKey
from acmekit.protocol.messages import (
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    OrderStatus,
)
from acmekit.protocol.problems import AcmeError, ProblemType, problem

log = logging.getLogger(__name__)

ACCOUNT_KEY_SETTING = "account_key"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def key_from_pem(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def ari_cert_id(fullchain_pem: str) -> str:
    """RFC 9773 §4.1: the certID of the chain's leaf, as `replaces` names it."""
    return str(cert_id_of(x509.load_pem_x509_certificates(fullchain_pem.encode())[0]))


def account_key(inventory: Inventory) -> PrivateKey:
    """The fleet's ACME account key, made and stored in the inventory on first use."""
    return key_from_pem(
        inventory.settings.value_or_store(ACCOUNT_KEY_SETTING, key_to_pem(new_key()))
    )


class DbHttpSolver:
    """http-01 (RFC 8555 §8.3): answers stored in the inventory, served by the API's
    `/.well-known/acme-challenge/{token}` in any fleet process."""

    def __init__(self, inventory: Inventory, now_us: Callable[[], int]) -> None:
        self.inventory = inventory
        self._now = now_us

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        self.inventory.challenges.put(challenge.token or "", key_authorization, self._now())

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        self.inventory.challenges.drop(challenge.token or "")


_METHOD = {
    ChallengeMethod.HTTP_01: ChallengeType.HTTP_01,
    ChallengeMethod.DNS_01: ChallengeType.DNS_01,
    ChallengeMethod.DNS_PERSIST_01: ChallengeType.DNS_PERSIST_01,
    ChallengeMethod.DNS_ACCOUNT_01: ChallengeType.DNS_ACCOUNT_01,
}


Delegated = Callable[[Sequence[str]], Awaitable[bool]]

_VALIDATION_FAILURES = frozenset(
    str(t)
    for t in (
        ProblemType.UNAUTHORIZED,
        ProblemType.CONNECTION,
        ProblemType.DNS,
        ProblemType.INCORRECT_RESPONSE,
        ProblemType.TLS,
        ProblemType.COMPOUND,
    )
)


def is_validation_failure(exc: BaseException) -> bool:
    """The CA could not validate a name (the site's doing, not the CA's), or offered
    no challenge of the method tried."""
    if isinstance(exc, NoUsableChallenge):
        return True
    return isinstance(exc, AcmeError) and exc.problem.type in _VALIDATION_FAILURES


class AcmeIssuer:
    """Issue through `client` (registered) with `solvers` by challenge type."""

    def __init__(
        self,
        client: Client,
        solvers: Mapping[ChallengeType, Solver],
        name: str,
        delegated: Delegated | None = None,
    ) -> None:
        self.client = client
        self.solvers = solvers
        self.name = name
        self.delegated = delegated

    async def issue(self, request: OrderRequest, started: OrderStarted) -> str:
        if _METHOD[request.challenge_method] not in self.solvers:
            # Before any order: the CA is not asked for what the fleet cannot validate.
            names, method = request.site.names, request.challenge_method
            raise FleetCannotValidate(refusal(names, method, dns01=False) or DNS01_HINT)
        try:
            return await self._issue(request, started)
        except (AcmeError, NoUsableChallenge) as exc:
            if not await self._fall_back(request, exc):
                raise
        log.info("site %s: http-01 failed; trying dns-01 through delegation", request.site.id)
        again = replace(request, method=ChallengeMethod.DNS_01, resume_url=None)
        return await self._issue(again, started)

    async def _fall_back(self, request: OrderRequest, exc: Exception) -> bool:
        return (
            request.challenge_method == ChallengeMethod.HTTP_01
            and ChallengeType.DNS_01 in self.solvers
            and self.delegated is not None
            and is_validation_failure(exc)
            and await self.delegated(request.site.names)
        )

    async def renewal_window(self, fullchain_pem: str) -> RenewalWindow | None:
        leaf = x509.load_pem_x509_certificates(fullchain_pem.encode())[0]
        info = await self.client.renewal_info(leaf)
        if info is None:
            return None
        return RenewalWindow(to_us(info.start), to_us(info.end), info.retry_after)

    async def _issue(self, request: OrderRequest, started: OrderStarted) -> str:
        if request.challenge_method == ChallengeMethod.DNS_PERSIST_01:
            await self._check_persist(request.site.names)
        order = await self._order(request, started)
        if order.status == OrderStatus.PENDING:
            if await self._authorize(order, _METHOD[request.challenge_method]):
                # §7.1.6: every authorization valid makes the order ready; finalize
                # without asking (one signed request less per site).
                order = replace(order, status=OrderStatus.READY)
            else:
                order = await self.client.poll_order(order)
        if order.status == OrderStatus.READY:
            order = await self._finalize(order, request.csr_der)
        if order.status in (OrderStatus.PENDING, OrderStatus.PROCESSING):
            order = await self.client.poll_order(order)
        if order.status != OrderStatus.VALID or order.certificate is None:
            raise order_failure(order)
        return await self.client.download_certificate(order.certificate)

    async def _finalize(self, order: Order, csr_der: bytes) -> Order:
        """Finalize; if the CA says the order is not ready after all (RFC 8555 §7.4:
        orderNotReady), fetch it once and finalize only if it then is (processing is
        polled by the caller; anything else fails the attempt, to be resumed)."""
        try:
            return await self.client.finalize(order, csr_der)
        except AcmeError as exc:
            if exc.problem.type != ProblemType.ORDER_NOT_READY:
                raise
        order = await self.client.order(order.url)
        if order.status == OrderStatus.READY:
            return await self.client.finalize(order, csr_der)
        return order

    async def _order(self, request: OrderRequest, started: OrderStarted) -> Order:
        if request.resume_url is not None:
            order = await self.client.order(request.resume_url)
            if order.status != OrderStatus.INVALID:
                log.info("resuming order %s", order.url)
                return order
        # A claim on the old certificate lost (an inventory restored from a backup) is
        # ordered around, without `replaces` (RFC 9773 §5), rather than failed for ever.
        order, _ = await self.client.new_replacement_order(
            request.site.names, replaces=request.replaces
        )
        await started(order.url)
        return order

    async def _check_persist(self, names: Sequence[str]) -> None:
        """Before ordering, the customer's standing record must be there (through the
        configured resolver): an order without it would only fail at the CA."""
        solver = self.solvers.get(ChallengeType.DNS_PERSIST_01)
        if not isinstance(solver, DnsPersistSolver):
            raise NoUsableChallenge(names[0], ["dns-persist-01"], sorted(self.solvers))
        info = await self.client.account_info()
        try:
            absent = await solver.missing(names, info)
        except (SolverError, DNSException, OSError) as exc:
            raise problem(
                ProblemType.DNS, f"dns-persist-01 record not readable: {exc or type(exc).__name__}"
            ) from None
        if absent:
            # One record per name: with policy=wildcard if a wildcard needs it (§5).
            bases: dict[str, bool] = {}
            for n in absent:
                base = n.removeprefix("*.")
                bases[base] = bases.get(base, False) or n.startswith("*.")
            records = [record_text(b, info, wildcard=w).zone_line() for b, w in bases.items()]
            raise problem(
                ProblemType.UNAUTHORIZED,
                f"no dns-persist-01 record for this CA and account at "
                f"{', '.join(absent)}; publish: {' | '.join(records)}",
            )

    async def _authorize(self, order: Order, kind: ChallengeType) -> bool:
        """Solve the order's pending authorizations; True when every authorization of
        the order is then valid."""
        authzs = await self.client.authorizations(order)
        pending = [a for a in authzs if a.status == AuthorizationStatus.PENDING]
        chosen = [(a, choose_challenge(a, self.solvers, (kind,))) for a in pending]
        solver = self.solvers[kind]
        if isinstance(solver, AccountAware):
            # One solver serves every CA of the pool: bind a copy to this account.
            solver = copy.copy(solver)
            solver.for_account(await self.client.account_info())
        key_auths = [self._key_authorization(c) for _, c in chosen]
        try:
            for (a, c), ka in zip(chosen, key_auths, strict=True):
                ident = a.identifier
                if a.wildcard and kind == ChallengeType.DNS_PERSIST_01:
                    ident = replace(ident, value="*." + ident.value)
                await solver.present(ident, c, ka)
            if isinstance(solver, Waiter) and chosen:
                await solver.wait()
            await _settled(self._answer(a, c) for a, c in chosen)
        finally:
            for (a, c), ka in zip(chosen, key_auths, strict=True):
                await solver.cleanup(a.identifier, c, ka)
        # Those not pending before were valid (reused) or failed; _answer raised for
        # any pending one that did not become valid.
        return all(
            a.status in (AuthorizationStatus.PENDING, AuthorizationStatus.VALID) for a in authzs
        )

    def _key_authorization(self, challenge: Challenge) -> str:
        return key_authorization(challenge.token or "", self.client.account_key)

    async def _answer(self, authz: Authorization, challenge: Challenge) -> None:
        answered = challenge
        if challenge.status == ChallengeStatus.PENDING:
            try:
                answered = await self.client.answer_challenge(challenge)
            except AcmeError:
                # another site's order may share the authorization and have answered
                # another of its challenges (Client.decided_elsewhere)
                decided = await self.client.decided_elsewhere(authz)
                if decided is None:
                    raise
                if decided.status != AuthorizationStatus.VALID:
                    raise AcmeError(decided.failure()) from None
                return
        if answered.status == ChallengeStatus.VALID:
            # §7.1.6: one valid challenge makes its authorization valid.
            return
        # Just answered, the CA is validating: wait one backoff step before asking.
        done = await self.client.poll_authorization(
            authz, wait_first=challenge.status == ChallengeStatus.PENDING
        )
        if done.status != AuthorizationStatus.VALID:
            raise AcmeError(done.failure())


async def _settled(answers: Iterable[Awaitable[None]]) -> None:
    """Await every answer, then raise the first failure. The tokens are cleaned up only
    after this returns: an answer that failed early must not take away the tokens of
    validations the CA is still making, which would then fail too (invalid
    authorizations, not reusable next attempt, and failed validations counted against
    the account's limit for those names)."""
    results = await asyncio.gather(*answers, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result

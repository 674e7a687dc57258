"""The Issuer seam: how the worker gets a certificate for a site, whoever signs it.

`AcmeIssuer` (acme.py) asks an ACME CA through the client library. Simulations pass a
function of their own that signs with a local CA, so the planner and the worker's loop
can be driven through months in seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from acmekit.fleet.model import ChallengeMethod, Site


@dataclass(frozen=True)
class OrderRequest:
    site: Site
    csr_der: bytes
    replaces: str | None  # RFC 9773 certID of the certificate this one replaces
    resume_url: str | None  # an order a previous (perhaps dead) worker started
    method: ChallengeMethod | None = None  # None: the site's own

    @property
    def challenge_method(self) -> ChallengeMethod:
        """dns-01 for any wildcard (the only way to validate one but the two draft
        methods, dns-persist-01 and dns-account-01), else as asked."""
        method = self.method or self.site.method
        if method in (ChallengeMethod.DNS_PERSIST_01, ChallengeMethod.DNS_ACCOUNT_01):
            return method
        if any(n.startswith("*.") for n in self.site.names):
            return ChallengeMethod.DNS_01
        return method


OrderStarted = Callable[[str], Awaitable[None]]


class Issuer(Protocol):
    name: str  # the CA, as shown in metrics and stored with each certificate

    async def issue(self, request: OrderRequest, started: OrderStarted) -> str:
        """The PEM chain, leaf first. `started(order_url)` is awaited as soon as the
        order exists, so that another worker can finish it if this one dies."""
        ...


@dataclass(frozen=True)
class RenewalWindow:
    """A CA's suggested renewal window (RFC 9773 §4.2), in microseconds, and when to
    ask again (None: the CA did not say)."""

    start: int
    end: int
    retry_after: float | None


@runtime_checkable
class RenewalInfoSource(Protocol):
    """An Issuer that can also say when a certificate it issued should be renewed."""

    async def renewal_window(self, fullchain_pem: str) -> RenewalWindow | None: ...

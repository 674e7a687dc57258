"""ACME resources as JSON (RFC 8555 §7.1), and the URLs that name them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from acmekit.protocol.messages import ChallengeType, OrderStatus
from acmekit.server import paths
from acmekit.server.ari import Window
from acmekit.server.authority import AuthzView, OrderView
from acmekit.server.config import ServerConfig
from acmekit.server.profiles import descriptions
from acmekit.server.records import AccountRecord, ChallengeRecord


def rfc3339(t: datetime) -> str:
    """`t` (UTC) to the second, as RFC 3339 §5.6 writes it. `isoformat` always writes
    four digits of year (`strftime`'s %Y does not below 1000) and costs half as much,
    several times a request."""
    return t.isoformat(timespec="seconds")[:19] + "Z"


@dataclass(frozen=True)
class Urls:
    """Every URL the CA hands out: a path of acmekit.server.paths under the base the
    client reached the CA at."""

    base: str

    @property
    def directory(self) -> str:
        return self.base + paths.DIRECTORY.path()

    @property
    def account_prefix(self) -> str:
        return self.base + paths.ACCOUNT.path()

    def account(self, account_id: str) -> str:
        return self.base + paths.ACCOUNT.path(account_id)

    def account_orders(self, account_id: str) -> str:
        return self.base + paths.ACCOUNT_ORDERS.path(account_id)

    def account_orders_page(self, account_id: str, after: tuple[int, str]) -> str:
        page = f"{account_id}~{after[0]}-{after[1]}"
        return self.base + paths.ACCOUNT_ORDERS_PAGE.path(page)

    def order(self, order_id: str) -> str:
        return self.base + paths.ORDER.path(order_id)

    def finalize(self, order_id: str) -> str:
        return self.base + paths.FINALIZE.path(order_id)

    def authz(self, authz_id: str) -> str:
        return self.base + paths.AUTHZ.path(authz_id)

    def challenge(self, challenge_id: str) -> str:
        return self.base + paths.CHALLENGE.path(challenge_id)

    def certificate(self, cert_id: str) -> str:
        return self.base + paths.CERTIFICATE.path(cert_id)

    def resource(self, endpoint: paths.Endpoint) -> str:
        """An endpoint without an id (newOrder, keyChange, the issuer certificate...)."""
        return self.base + endpoint.path()


def directory(urls: Urls, config: ServerConfig) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "caaIdentities": list(config.caa_identities),
        "externalAccountRequired": config.eab_required,
        "profiles": descriptions(config.all_profiles),
    }
    if config.terms_of_service:
        meta["termsOfService"] = config.terms_of_service
    if config.website:
        meta["website"] = config.website
    if config.offers_dns_persist:
        # draft-ietf-acme-dns-persist-02 §3.2 and §4.1: what pre-provisioning needs.
        meta["issuerDomainNames"] = list(config.persist_issuers)
        meta["accountHashPrefix"] = config.persist_hash_prefix(urls.base)
    return {
        "newNonce": urls.resource(paths.NEW_NONCE),
        "newAccount": urls.resource(paths.NEW_ACCOUNT),
        "newOrder": urls.resource(paths.NEW_ORDER),
        "revokeCert": urls.resource(paths.REVOKE_CERT),
        "keyChange": urls.resource(paths.KEY_CHANGE),
        "renewalInfo": urls.resource(paths.RENEWAL_INFO),
        "meta": meta,
    }


def account(urls: Urls, rec: AccountRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": str(rec.status),
        "contact": list(rec.contact),
        "orders": urls.account_orders(rec.id),
        "createdAt": rfc3339(rec.created),
    }
    if rec.eab_kid:
        doc["externalAccountBinding"] = {"kid": rec.eab_kid}
    return doc


def challenge(urls: Urls, ch: ChallengeRecord, issuers: Sequence[str] = ()) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": str(ch.type),
        "url": urls.challenge(ch.id),
        "status": str(ch.status),
    }
    if ch.type == ChallengeType.DNS_PERSIST_01:
        # draft-ietf-acme-dns-persist-02 §3.1: no token; the names a record may give.
        doc["issuerDomainNames"] = list(issuers)
    else:
        doc["token"] = ch.token
    if ch.validated is not None:
        doc["validated"] = rfc3339(ch.validated)
    if ch.error is not None:
        doc["error"] = ch.error
    return doc


def authorization(urls: Urls, view: AuthzView, issuers: Sequence[str] = ()) -> dict[str, Any]:
    rec = view.record
    # Loops, not comprehensions, here and in `order`: a comprehension is a function
    # object made and called (Python 3.11), and these render every poll.
    challenges = []
    for ch in rec.challenges:
        challenges.append(challenge(urls, ch, issuers))
    doc: dict[str, Any] = {
        "identifier": rec.identifier.to_json(),
        "status": str(view.status),
        "expires": rfc3339(rec.expires),
        "challenges": challenges,
    }
    if rec.wildcard:
        doc["wildcard"] = True
    return doc


def order(urls: Urls, view: OrderView) -> dict[str, Any]:
    rec = view.record
    identifiers = []
    for ident in rec.identifiers:
        identifiers.append(ident.to_json())
    authorizations = []
    for authz_id in rec.authz_ids:
        authorizations.append(urls.authz(authz_id))
    doc: dict[str, Any] = {
        "status": str(view.status),
        "expires": rfc3339(rec.expires),
        "identifiers": identifiers,
        "authorizations": authorizations,
        "finalize": urls.finalize(rec.id),
    }
    if rec.profile:
        doc["profile"] = rec.profile
    if rec.replaces:
        doc["replaces"] = rec.replaces
    if view.status == OrderStatus.VALID and rec.certificate_id:
        doc["certificate"] = urls.certificate(rec.certificate_id)
    if view.error is not None:
        doc["error"] = view.error
    return doc


def renewal_info(window: Window) -> dict[str, Any]:
    return {"suggestedWindow": {"start": rfc3339(window.start), "end": rfc3339(window.end)}}

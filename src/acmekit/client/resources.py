"""ACME resources as the client sees them: frozen snapshots parsed from server JSON.

Each object carries its URL and the fields RFC 8555 §7.1 defines, with statuses as
the protocol's StrEnums. A server that sends something unparseable has sent a
malformed message, reported as ServerProtocolError. Challenge types this client does
not know are kept, with their raw JSON, rather than dropped (§8: new types may come).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from acmekit.client.errors import ServerProtocolError
from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
    OrderStatus,
)
from acmekit.protocol.problems import Problem, ProblemType


def _str(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ServerProtocolError(f"server sent no string {key!r}")
    return value


def _opt_str(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) else None


def _time(doc: Mapping[str, Any], key: str) -> datetime | None:
    value = doc.get(key)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise ServerProtocolError(f"server sent a bad timestamp in {key!r}") from exc


def _problem(doc: Mapping[str, Any]) -> Problem | None:
    err = doc.get("error")
    return Problem.from_json(err) if isinstance(err, dict) else None


def _enum(kind: type[Any], doc: Mapping[str, Any], key: str = "status") -> Any:
    try:
        return kind(doc.get(key))
    except ValueError as exc:
        raise ServerProtocolError(f"server sent unknown {key} {doc.get(key)!r}") from exc


def _identifier(doc: Any) -> Identifier:
    if not isinstance(doc, dict):
        raise ServerProtocolError("server sent a bad identifier")
    return Identifier(_enum(IdentifierType, doc, "type"), _str(doc, "value"))


def _array(doc: Mapping[str, Any], key: str, missing: str) -> list[Any]:
    """`doc[key]`, a JSON array that the resource cannot be read without; else
    ServerProtocolError(`missing`)."""
    value = doc.get(key)
    if not isinstance(value, list):
        raise ServerProtocolError(missing)
    return value


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


@dataclass(frozen=True)
class Directory:
    """§7.1.1: the directory object; optional entries are None when absent."""

    new_nonce: str
    new_account: str
    new_order: str
    revoke_cert: str
    key_change: str
    new_authz: str | None = None
    renewal_info: str | None = None
    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: tuple[str, ...] = ()
    external_account_required: bool = False
    profiles: Mapping[str, str] = field(default_factory=dict)
    # draft-ietf-acme-dns-persist-02 §3.2 and §4.1: what pre-provisioning needs.
    issuer_domain_names: tuple[str, ...] = ()
    account_hash_prefix: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Directory:
        raw_meta = doc.get("meta")
        meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        profiles = meta.get("profiles")
        return cls(
            new_nonce=_str(doc, "newNonce"),
            new_account=_str(doc, "newAccount"),
            new_order=_str(doc, "newOrder"),
            revoke_cert=_str(doc, "revokeCert"),
            key_change=_str(doc, "keyChange"),
            new_authz=_opt_str(doc, "newAuthz"),
            renewal_info=_opt_str(doc, "renewalInfo"),
            terms_of_service=_opt_str(meta, "termsOfService"),
            website=_opt_str(meta, "website"),
            caa_identities=_strings(meta.get("caaIdentities")),
            external_account_required=bool(meta.get("externalAccountRequired", False)),
            profiles=dict(profiles) if isinstance(profiles, dict) else {},
            issuer_domain_names=_strings(meta.get("issuerDomainNames")),
            account_hash_prefix=_opt_str(meta, "accountHashPrefix"),
        )


@dataclass(frozen=True)
class Account:
    """§7.1.2. `url` is the account URL, the `kid` of every later request."""

    url: str
    status: AccountStatus
    contact: tuple[str, ...] = ()
    orders: str | None = None
    terms_of_service_agreed: bool | None = None

    @classmethod
    def from_json(cls, url: str, doc: Mapping[str, Any]) -> Account:
        agreed = doc.get("termsOfServiceAgreed")
        return cls(
            url=url,
            status=_enum(AccountStatus, doc),
            contact=_strings(doc.get("contact")),
            orders=_opt_str(doc, "orders"),
            terms_of_service_agreed=agreed if isinstance(agreed, bool) else None,
        )


@dataclass(frozen=True)
class Challenge:
    """§7.1.5 / §8. `type` is the wire string; `known_type` is None for new types."""

    url: str
    type: str
    status: ChallengeStatus
    token: str | None = None
    validated: datetime | None = None
    error: Problem | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def issuer_domain_names(self) -> tuple[str, ...]:
        """dns-persist-01's names (draft-ietf-acme-dns-persist-02 §3.1); empty if absent."""
        names = self.raw.get("issuerDomainNames")
        if not isinstance(names, list):
            return ()
        return tuple(n for n in names if isinstance(n, str))

    @property
    def known_type(self) -> ChallengeType | None:
        try:
            return ChallengeType(self.type)
        except ValueError:
            return None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Challenge:
        return cls(
            url=_str(doc, "url"),
            type=_str(doc, "type"),
            status=_enum(ChallengeStatus, doc),
            token=_opt_str(doc, "token"),
            validated=_time(doc, "validated"),
            error=_problem(doc),
            raw=dict(doc),
        )


@dataclass(frozen=True)
class Authorization:
    """§7.1.4. For a wildcard order the identifier is the base name, `wildcard` True."""

    url: str
    identifier: Identifier
    status: AuthorizationStatus
    challenges: tuple[Challenge, ...]
    expires: datetime | None = None
    wildcard: bool = False

    @classmethod
    def from_json(cls, url: str, doc: Mapping[str, Any]) -> Authorization:
        challenges = _array(doc, "challenges", "authorization without a challenges array")
        return cls(
            url=url,
            identifier=_identifier(doc.get("identifier")),
            status=_enum(AuthorizationStatus, doc),
            challenges=tuple(Challenge.from_json(c) for c in challenges if isinstance(c, dict)),
            expires=_time(doc, "expires"),
            wildcard=doc.get("wildcard") is True,
        )

    def failure(self) -> Problem:
        """Why this authorization is not valid, naming its identifier (for subproblems)."""
        errors = [c.error for c in self.challenges if c.error is not None]
        base = errors[0] if errors else None
        return Problem(
            type=base.type if base else str(ProblemType.UNAUTHORIZED),
            detail=base.detail if base else f"authorization is {self.status}",
            status=base.status if base else 403,
            identifier=self.identifier.to_json(),
        )


@dataclass(frozen=True)
class Order:
    """§7.1.3. `certificate` is set once the order is valid."""

    url: str
    status: OrderStatus
    identifiers: tuple[Identifier, ...]
    authorizations: tuple[str, ...]
    finalize: str
    certificate: str | None = None
    expires: datetime | None = None
    error: Problem | None = None
    profile: str | None = None
    replaces: str | None = None

    @classmethod
    def from_json(cls, url: str, doc: Mapping[str, Any]) -> Order:
        idents = _array(doc, "identifiers", "order without an identifiers array")
        return cls(
            url=url,
            status=_enum(OrderStatus, doc),
            identifiers=tuple(_identifier(i) for i in idents),
            authorizations=_strings(doc.get("authorizations")),
            finalize=_str(doc, "finalize"),
            certificate=_opt_str(doc, "certificate"),
            expires=_time(doc, "expires"),
            error=_problem(doc),
            profile=_opt_str(doc, "profile"),
            replaces=_opt_str(doc, "replaces"),
        )


@dataclass(frozen=True)
class RenewalInfo:
    """RFC 9773 §4.2: when the CA suggests renewing, and when to ask again."""

    start: datetime
    end: datetime
    retry_after: float | None = None
    explanation_url: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], retry_after: float | None) -> RenewalInfo:
        window = doc.get("suggestedWindow")
        if not isinstance(window, dict):
            raise ServerProtocolError("renewalInfo has no suggestedWindow")
        start, end = _time(window, "start"), _time(window, "end")
        if start is None or end is None:
            raise ServerProtocolError("renewalInfo suggestedWindow needs start and end times")
        url = doc.get("explanationURL")
        return cls(start, end, retry_after, url if isinstance(url, str) else None)


@dataclass(frozen=True)
class IssuedCertificate:
    """The result of `Client.issue`: the final order and the PEM chain, leaf first."""

    order: Order
    fullchain_pem: str
    certificate_url: str
    alternates: tuple[str, ...] = ()

    @property
    def cert_pem(self) -> str:
        """Only the leaf certificate."""
        end = "-----END CERTIFICATE-----"
        return self.fullchain_pem.split(end, 1)[0] + end + "\n"

    @property
    def chain_pem(self) -> str:
        """The chain without the leaf (certbot's chain.pem)."""
        end = "-----END CERTIFICATE-----"
        return self.fullchain_pem.split(end, 1)[1].lstrip("\n")


__all__ = [
    "Account",
    "Authorization",
    "Challenge",
    "Directory",
    "IssuedCertificate",
    "Order",
]

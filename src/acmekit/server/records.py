"""The CA's stored records as frozen dataclasses: what the store returns and the rules read.

Statuses that RFC 8555 §7.1.6 derives (authorization, order) are not fields here; the
rules compute them from these facts with acmekit.protocol.messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
)


@dataclass(frozen=True)
class AccountRecord:
    id: str
    thumbprint: str
    jwk: dict[str, str]
    contact: tuple[str, ...]
    status: AccountStatus
    created: datetime
    eab_kid: str | None = None


@dataclass(frozen=True)
class ChallengeRecord:
    id: str
    authz_id: str
    type: ChallengeType
    token: str
    status: ChallengeStatus
    validated: datetime | None = None
    error: dict[str, Any] | None = None
    started: datetime | None = None
    account_uri: str | None = None  # the account URL the validation was asked under


@dataclass(frozen=True)
class AuthorizationRecord:
    id: str
    account_id: str
    identifier: Identifier
    wildcard: bool
    # Only the states a client or the CA sets directly; the rest is derived.
    stored_status: AuthorizationStatus
    expires: datetime
    challenges: tuple[ChallengeRecord, ...]
    # The profile of the order that made it (None: the default profile), read with the
    # row so that reuse and validation need no second statement.
    profile: str | None = None
    # Whether an order carrying `replaces` uses it (RFC 9773 §5: exempt from limits).
    in_renewal: bool = False


@dataclass(frozen=True)
class ValidationEvidence:
    """What is recorded with an authorization about how its validation was made.

    `mpic_quorum` ("3/4") and `mpic_perspectives` (each remote's name, RIR, outcome):
    multi-perspective corroboration (BR §3.2.2.9), None without remote perspectives.
    `dnssec_dcv` / `dnssec_caa`: whether every DNS answer the challenge's lookups / the
    CAA lookups relied on was DNSSEC-authenticated (the validating resolver's AD bit);
    None when not asked (`[validation] dnssec = "off"`) or when no lookup was made."""

    mpic_quorum: str | None = None
    mpic_perspectives: tuple[dict[str, str], ...] | None = None
    dnssec_dcv: bool | None = None
    dnssec_caa: bool | None = None


@dataclass(frozen=True)
class OrderRecord:
    id: str
    account_id: str
    identifiers: tuple[Identifier, ...]
    authz_ids: tuple[str, ...]
    expires: datetime
    created: datetime
    not_before: datetime | None = None
    not_after: datetime | None = None
    profile: str | None = None
    replaces: str | None = None
    csr: bytes | None = None
    finalize_started: datetime | None = None
    error: dict[str, Any] | None = None
    certificate_id: str | None = None


@dataclass(frozen=True)
class CertificateRecord:
    id: str
    serial: str  # lower-case hex, no leading zeros
    order_id: str | None
    account_id: str | None
    pem: str | None  # None while the serial is reserved and signing is under way
    identifiers: tuple[Identifier, ...]
    not_before: datetime
    not_after: datetime
    issued: datetime
    revoked_at: datetime | None = None
    revocation_reason: int | None = None
    abandoned: bool = False
    precert: bytes | None = None  # the precertificate's DER, with CT on (RFC 6962 §3.1)


@dataclass(frozen=True)
class RevokedEntry:
    """What a CRL entry needs of a revoked certificate (RFC 5280 §5.1.2.6, §5.3.1)."""

    serial: str  # lower-case hex, as CertificateRecord's
    revoked_at: datetime
    revocation_reason: int | None


@dataclass(frozen=True)
class EabKey:
    """An External Account Binding key handed to a customer (RFC 8555 §7.3.4)."""

    kid: str
    hmac_key: str  # base64url
    created: datetime
    revoked: datetime | None = None
    account_id: str | None = None  # bound to the first account that used it


@dataclass(frozen=True)
class CrlRecord:
    """The latest signed CRL of one shard."""

    shard: int
    number: int
    this_update: datetime
    der: bytes


R = TypeVar("R")


def positional(cls: type[R]) -> Callable[..., R]:
    """A maker of `cls`'s records from all its fields, positional in field order, that
    skips `__init__`: a frozen dataclass's sets each field through `object.__setattr__`,
    a call each, and keyword arguments cost a dict more; the store makes several records
    a request from what it reads, at a third of the cost this way (docs/decisions.md).
    What it makes is the same record: equal to, hashed as, and as frozen as `cls(...)`'s.
    For a class with no `__post_init__` and no `__slots__` (these records)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    assert not {"new", "cls", "put"} & set(names) and "__post_init__" not in vars(cls)
    body = ", ".join(f"{n!r}: {n}" for n in names)
    source = (
        f"def make({', '.join(names)}):\n"
        f"    made = new(cls)\n    put(made, '__dict__', {{{body}}})\n    return made\n"
    )
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls, "put": object.__setattr__}
    exec(source, scope)  # the source is made of the dataclass's field names
    made: Callable[..., R] = scope["make"]
    return made

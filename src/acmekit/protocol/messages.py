"""ACME resources as plain data: identifiers, statuses, and the rules that derive status.

RFC 8555 §7.1.6 draws the state machines. An order's status is never stored: it is
computed from its authorizations, its error and its certificate, so it cannot drift.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from acmekit.protocol.problems import ProblemType, problem


class IdentifierType(StrEnum):
    DNS = "dns"
    IP = "ip"  # RFC 8738


class ChallengeType(StrEnum):
    HTTP_01 = "http-01"
    DNS_01 = "dns-01"
    TLS_ALPN_01 = "tls-alpn-01"
    # draft-ietf-acme-dns-persist-02 and draft-ietf-acme-dns-account-label-03
    DNS_PERSIST_01 = "dns-persist-01"
    DNS_ACCOUNT_01 = "dns-account-01"


class ChallengeStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class AuthorizationStatus(StrEnum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class OrderStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class AccountStatus(StrEnum):
    VALID = "valid"
    DEACTIVATED = "deactivated"
    REVOKED = "revoked"


class RevocationReason(int):
    """RFC 5280 §5.3.1 CRLReason codes that ACME clients may send (7 is unused)."""

    ALLOWED = frozenset({0, 1, 2, 3, 4, 5, 6, 8, 9, 10})
    # by their ASN.1 names
    RFC_NAMES = {
        "unspecified": 0,
        "keyCompromise": 1,
        "cACompromise": 2,
        "affiliationChanged": 3,
        "superseded": 4,
        "cessationOfOperation": 5,
        "certificateHold": 6,
        "removeFromCRL": 8,
        "privilegeWithdrawn": 9,
        "aACompromise": 10,
    }
    NAMES = {name.lower(): code for name, code in RFC_NAMES.items()}
    # What may stand on a subscriber certificate's CRL entry (Baseline Requirements
    # §7.2.2): neither suspension (certificateHold), delta CRLs (removeFromCRL) nor the
    # authorities' reasons. Both a subscriber's revokeCert and an operator give these.
    SUBSCRIBER_NAMES = (
        "unspecified",
        "keyCompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "privilegeWithdrawn",
    )
    SUBSCRIBER = frozenset(map(RFC_NAMES.__getitem__, SUBSCRIBER_NAMES))


@dataclass(frozen=True, order=True)
class Identifier:
    type: IdentifierType
    value: str

    def to_json(self) -> dict[str, str]:
        return {"type": str(self.type), "value": self.value}

    @property
    def is_wildcard(self) -> bool:
        return self.type == IdentifierType.DNS and self.value.startswith("*.")

    @property
    def base_name(self) -> str:
        """The name validated for this identifier: a wildcard's base domain (§7.1.3)."""
        return self.value[2:] if self.is_wildcard else self.value


def _rejected(value: str, why: str) -> Exception:
    return problem(
        ProblemType.REJECTED_IDENTIFIER,
        f"{value!r}: {why}",
        identifier={"type": "dns", "value": value},
    )


def _check_label(label: str, value: str) -> None:
    if not label:
        raise _rejected(value, "empty label")
    if len(label) > 63:
        raise _rejected(value, "label longer than 63 octets")
    if label.startswith("-") or label.endswith("-"):
        raise _rejected(value, "label starts or ends with a hyphen")
    # Letters, digits and hyphen (RFC 1035 §2.3.1), ASCII only: str.isalnum alone takes
    # non-ASCII letters and digits ('é', '٣', '²'). Whole-string methods, not a test per
    # character: every label of every identifier comes here. The label is not empty and
    # does not start with a hyphen (above), so without its hyphens it is not empty.
    if not (label.isascii() and (label.isalnum() or label.replace("-", "").isalnum())):
        raise _rejected(value, "label has characters other than letters, digits and hyphen")


def ascii_lower(name: str) -> str:
    """A DNS name in lower case if it is ASCII; otherwise as it is, so that it equals no
    ASCII name: str.lower takes the Kelvin sign (U+212A) to ASCII "k", and a dNSName is
    an IA5String (RFC 5280 §4.2.1.6) that parsers still take other octets into."""
    return name.lower() if name.isascii() else name


def parse_dns_name(value: str, min_labels: int = 2) -> str:
    """Check a dns identifier's value (RFC 8555 §7.1.3, §7.1.4) and lower-case it.
    `min_labels`: 1 for the names an operator configures (a CAA identity, a special-use
    name such as `test`); an identifier has at least two."""
    if not value or len(value) > 253:
        raise _rejected(value, "name is empty or longer than 253 octets")
    if value.endswith("."):
        raise _rejected(value, "trailing dot")
    lowered = value.lower()
    if not value.isascii() and lowered.isascii():
        # The Kelvin sign (U+212A), alone of all code points, lower-cases to ASCII ("k"):
        # the labels' check below sees the lowered name, which would be another name.
        raise _rejected(value, "label has characters other than letters, digits and hyphen")
    labels = lowered.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if not labels or not labels[0]:
            raise _rejected(value, "wildcard without a base name")
    if "*" in "".join(labels):
        raise _rejected(value, "'*' is allowed only as the whole leftmost label")
    for label in labels:
        _check_label(label, value)
    if len(labels) < min_labels:
        raise _rejected(value, "name must have at least two labels")
    if looks_like_ip(".".join(labels)):
        raise _rejected(value, "an IP address must be sent as an ip identifier (RFC 8738)")
    if labels[-1].isdigit():
        raise _rejected(value, "top-level label is all digits")
    return lowered


def looks_like_ip(text: str) -> bool:
    # An IPv6 address has a colon and an IPv4 one ends in a digit; anything else is not
    # one, known without the two parse attempts and the exception (every newOrder name).
    if ":" not in text and not text[-1:].isdigit():
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_identifier(doc: object) -> Identifier:
    """One identifier from a newOrder payload, checked and normalised."""
    if not isinstance(doc, dict) or not isinstance(doc.get("value"), str):
        raise problem(ProblemType.MALFORMED, "identifier must be an object with a string value")
    kind, value = doc.get("type"), doc["value"]
    if kind == IdentifierType.DNS:
        return Identifier(IdentifierType.DNS, parse_dns_name(value))
    if kind == IdentifierType.IP:
        try:
            # RFC 8738 §3: the address's text form of RFC 1123 / RFC 5952, which has no
            # zone: "::1%1" would be one more spelling (another authorization, another
            # rate-limit key) of an address the certificate carries without it.
            if "%" in value:
                raise ValueError("an IP identifier has no zone index")
            ip = ipaddress.ip_address(value)
        except ValueError as exc:
            raise problem(
                ProblemType.MALFORMED,
                f"{value!r} is not an IP address",
                identifier={"type": str(IdentifierType.IP), "value": value},
            ) from exc
        return Identifier(IdentifierType.IP, ip.compressed)
    raise problem(
        ProblemType.UNSUPPORTED_IDENTIFIER,
        f"identifier type {kind!r} is not supported",
        identifier={"type": str(kind), "value": value},
    )


def parse_identifiers(docs: object, limit: int = 100) -> tuple[Identifier, ...]:
    if not isinstance(docs, list) or not docs:
        raise problem(ProblemType.MALFORMED, "identifiers must be a non-empty array")
    if len(docs) > limit:
        raise problem(ProblemType.REJECTED_IDENTIFIER, f"at most {limit} identifiers per order")
    return tuple(sorted(set(parse_identifier(d) for d in docs)))


def authorization_status(
    stored: AuthorizationStatus,
    challenge_statuses: Iterable[ChallengeStatus],
    expires: datetime,
    now: datetime,
) -> AuthorizationStatus:
    """§7.1.6: valid if any challenge is valid, invalid if one failed, expired by time."""
    if stored in (AuthorizationStatus.DEACTIVATED, AuthorizationStatus.REVOKED):
        return stored
    statuses = set(challenge_statuses)
    if ChallengeStatus.VALID in statuses:
        return AuthorizationStatus.EXPIRED if now >= expires else AuthorizationStatus.VALID
    if ChallengeStatus.INVALID in statuses:
        return AuthorizationStatus.INVALID
    return AuthorizationStatus.EXPIRED if now >= expires else AuthorizationStatus.PENDING


def order_status(
    authz_statuses: Iterable[AuthorizationStatus],
    *,
    expires: datetime,
    now: datetime,
    finalizing: bool,
    has_certificate: bool,
    failed: bool,
) -> OrderStatus:
    """§7.1.6: the order's status from the state of what it is made of.

    `finalizing` means a CSR was accepted and issuance is under way; `failed` that
    finalization or validation ended the order with an error.
    """
    if has_certificate:
        return OrderStatus.VALID
    if failed:
        return OrderStatus.INVALID
    if finalizing:
        return OrderStatus.PROCESSING
    statuses = list(authz_statuses)
    if now >= expires:
        return OrderStatus.INVALID
    if any(s != AuthorizationStatus.VALID and s != AuthorizationStatus.PENDING for s in statuses):
        return OrderStatus.INVALID
    if statuses and all(s == AuthorizationStatus.VALID for s in statuses):
        return OrderStatus.READY
    return OrderStatus.PENDING

"""Problem documents (RFC 7807 as profiled by RFC 8555 §6.7).

Exception tree:

    AcmeError                 carries one Problem from any depth to one renderer
      (no subclasses: the Problem's type says what went wrong)

A Problem is plain data; `AcmeError(problem)` is how code raises it. Constructors named
after the RFC's error types keep call sites short: `raise malformed("bad url")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ACME_ERROR_NS = "urn:ietf:params:acme:error:"


class ProblemType(StrEnum):
    """RFC 8555 §6.7 table of error types, plus RFC 9773's and profiles' additions."""

    ACCOUNT_DOES_NOT_EXIST = ACME_ERROR_NS + "accountDoesNotExist"
    ALREADY_REVOKED = ACME_ERROR_NS + "alreadyRevoked"
    BAD_CSR = ACME_ERROR_NS + "badCSR"
    BAD_NONCE = ACME_ERROR_NS + "badNonce"
    BAD_PUBLIC_KEY = ACME_ERROR_NS + "badPublicKey"
    BAD_REVOCATION_REASON = ACME_ERROR_NS + "badRevocationReason"
    BAD_SIGNATURE_ALGORITHM = ACME_ERROR_NS + "badSignatureAlgorithm"
    CAA = ACME_ERROR_NS + "caa"
    COMPOUND = ACME_ERROR_NS + "compound"
    CONNECTION = ACME_ERROR_NS + "connection"
    DNS = ACME_ERROR_NS + "dns"
    EXTERNAL_ACCOUNT_REQUIRED = ACME_ERROR_NS + "externalAccountRequired"
    INCORRECT_RESPONSE = ACME_ERROR_NS + "incorrectResponse"
    INVALID_CONTACT = ACME_ERROR_NS + "invalidContact"
    MALFORMED = ACME_ERROR_NS + "malformed"
    ORDER_NOT_READY = ACME_ERROR_NS + "orderNotReady"
    RATE_LIMITED = ACME_ERROR_NS + "rateLimited"
    REJECTED_IDENTIFIER = ACME_ERROR_NS + "rejectedIdentifier"
    SERVER_INTERNAL = ACME_ERROR_NS + "serverInternal"
    TLS = ACME_ERROR_NS + "tls"
    UNAUTHORIZED = ACME_ERROR_NS + "unauthorized"
    UNSUPPORTED_CONTACT = ACME_ERROR_NS + "unsupportedContact"
    UNSUPPORTED_IDENTIFIER = ACME_ERROR_NS + "unsupportedIdentifier"
    USER_ACTION_REQUIRED = ACME_ERROR_NS + "userActionRequired"
    ALREADY_REPLACED = ACME_ERROR_NS + "alreadyReplaced"
    INVALID_PROFILE = ACME_ERROR_NS + "invalidProfile"


# The HTTP status each type is answered with, where RFC 8555 or practice fixes one.
_STATUS: dict[ProblemType, int] = {
    ProblemType.ACCOUNT_DOES_NOT_EXIST: 400,
    ProblemType.BAD_NONCE: 400,
    ProblemType.UNAUTHORIZED: 403,
    ProblemType.ORDER_NOT_READY: 403,
    ProblemType.RATE_LIMITED: 429,
    ProblemType.SERVER_INTERNAL: 500,
    ProblemType.ALREADY_REPLACED: 409,
}


@dataclass(frozen=True)
class Problem:
    type: str
    detail: str = ""
    status: int = 400
    identifier: dict[str, str] | None = None
    subproblems: tuple[Problem, ...] = ()
    # Seconds a client should wait before trying again (rate limits, processing).
    retry_after: int | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.type, "detail": self.detail, "status": self.status}
        if self.identifier is not None:
            doc["identifier"] = dict(self.identifier)
        if self.subproblems:
            doc["subproblems"] = [p.to_json() for p in self.subproblems]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any], default_status: int = 400) -> Problem:
        subs = tuple(cls.from_json(s) for s in doc.get("subproblems") or () if isinstance(s, dict))
        ident = doc.get("identifier")
        return cls(
            type=str(doc.get("type", "about:blank")),
            detail=str(doc.get("detail", "")),
            status=int(doc.get("status", default_status)),
            identifier=dict(ident) if isinstance(ident, dict) else None,
            subproblems=subs,
        )

    def describe(self) -> str:
        """One readable line: short type, detail, and each subproblem's identifier."""
        short = self.type.removeprefix(ACME_ERROR_NS)
        line = f"{short}: {self.detail}" if self.detail else short
        for sub in self.subproblems:
            who = (sub.identifier or {}).get("value", "?")
            line += f"; {who}: {sub.type.removeprefix(ACME_ERROR_NS)}: {sub.detail}"
        return line


class AcmeError(Exception):
    """Carries a Problem from wherever it was found to the one place that renders it."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.describe())
        self.problem = problem


def problem(
    ptype: ProblemType,
    detail: str,
    *,
    status: int | None = None,
    identifier: dict[str, str] | None = None,
    subproblems: tuple[Problem, ...] = (),
    retry_after: int | None = None,
) -> AcmeError:
    """Build the exception for a Problem of `ptype`, with its usual HTTP status."""
    return AcmeError(
        Problem(
            type=str(ptype),
            detail=detail,
            status=status if status is not None else _STATUS.get(ptype, 400),
            identifier=identifier,
            subproblems=subproblems,
            retry_after=retry_after,
        )
    )


def malformed(detail: str) -> AcmeError:
    return problem(ProblemType.MALFORMED, detail)


def unauthorized(detail: str) -> AcmeError:
    return problem(ProblemType.UNAUTHORIZED, detail)


def not_found(detail: str = "no such resource") -> AcmeError:
    return problem(ProblemType.MALFORMED, detail, status=404)

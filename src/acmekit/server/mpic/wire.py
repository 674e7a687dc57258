"""What the CA asks a remote perspective and what it answers (JSON over HTTPS).

    POST /v1/corroborate
    {"type": "http-01", "identifier": {"type": "dns", "value": "a.test"}, "wildcard": false,
     "token": "...", "keyAuthorization": "...", "accountUri": "https://ca/acct/1",
     "caaIdentities": ["acmekit"],          # null: the CA does not check CAA
     "validate": true,                      # false: CAA only (rechecked at finalize)
     "account": null}                       # dns-persist-01, dns-account-01: see below

For the account-bound challenges (dns-persist-01, dns-account-01) a validating request
carries what the CA's own check used, so the perspective checks the same thing:

    "account": {"url": "https://ca/acct/1",           # equal to accountUri
                "thumbprints": ["..."],              # RFC 7638, the current key first
                "issuerDomainNames": ["ca.example"], # draft-ietf-acme-dns-persist-02 §3.1
                "accountHashPrefix": "https://ca/acme/account-hash/",
                "wildcard": false,                   # equal to wildcard
                "now": 1767000000}                   # UNIX seconds, for persistUntil

It is required for them (when `validate`) and must be null otherwise. The perspective
reads it strictly (types, sizes, formats) although only the CA can ask.

    200 {"perspective": "p1", "rir": "RIPE", "dcv": null, "caa": null}

`dcv` and `caa` are null when the check passed and the RFC 7807 problem when it failed;
`caa` is also null when it was not asked for (or the identifier is an IP address, which
CAA does not cover). The perspective answers 400 to a request it cannot read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from acmekit.protocol.messages import ChallengeType, Identifier, parse_identifier
from acmekit.protocol.problems import Problem, malformed
from acmekit.server.validation.accountbound import AccountContext

PATH = "/v1/corroborate"

ACCOUNT_BOUND = (ChallengeType.DNS_PERSIST_01, ChallengeType.DNS_ACCOUNT_01)
# The current key and the most recent keys it replaced: a record bound to a key older
# than these is not corroborated (the validation fails, never the other way round).
MAX_THUMBPRINTS = 64
MAX_ISSUERS = 10  # draft-ietf-acme-dns-persist-02 §3.1
MAX_URL = 1024
_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of SHA-256, unpadded
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ISSUER = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # §3.1: lowercase, no trailing dot
_URL = re.compile(r"https?://[\x21-\x7e]+")  # printable ASCII, no spaces
_MAX_NOW = 2**40  # UNIX seconds, far past any certificate


def account_to_json(account: AccountContext) -> dict[str, Any]:
    return {
        "url": account.account_url,
        "thumbprints": list(account.thumbprints[:MAX_THUMBPRINTS]),
        "issuerDomainNames": list(account.issuer_domain_names),
        "accountHashPrefix": account.account_hash_prefix,
        "wildcard": account.wildcard,
        "now": account.now,
    }


def account_from_json(doc: object) -> AccountContext:
    """Raise AcmeError (malformed) for anything but a well-formed account context."""
    if not isinstance(doc, dict):
        raise malformed("account must be a JSON object")
    keys = {"url", "thumbprints", "issuerDomainNames", "accountHashPrefix", "wildcard", "now"}
    if set(doc) != keys:
        raise malformed(f"account must have exactly the members {', '.join(sorted(keys))}")
    for key in ("url", "accountHashPrefix"):
        value = doc[key]
        if not (isinstance(value, str) and len(value) <= MAX_URL and _URL.fullmatch(value)):
            raise malformed(f"account.{key} must be an http(s) URL of at most {MAX_URL} bytes")
    thumbprints = doc["thumbprints"]
    if not (
        isinstance(thumbprints, list)
        and 1 <= len(thumbprints) <= MAX_THUMBPRINTS
        and all(isinstance(t, str) and _THUMBPRINT.fullmatch(t) for t in thumbprints)
    ):
        raise malformed(
            f"account.thumbprints must be 1 to {MAX_THUMBPRINTS} RFC 7638 SHA-256 thumbprints"
        )
    issuers = doc["issuerDomainNames"]
    if not (
        isinstance(issuers, list)
        and 1 <= len(issuers) <= MAX_ISSUERS
        and all(isinstance(n, str) and len(n) <= 253 and _ISSUER.fullmatch(n) for n in issuers)
    ):
        raise malformed(
            f"account.issuerDomainNames must be 1 to {MAX_ISSUERS} lowercase domain names"
        )
    if not isinstance(doc["wildcard"], bool):
        raise malformed("account.wildcard must be a boolean")
    now = doc["now"]
    # bool is an int in Python; JSON true is not a time.
    if not (isinstance(now, int) and not isinstance(now, bool) and 0 < now < _MAX_NOW):
        raise malformed("account.now must be a positive integer (UNIX seconds)")
    return AccountContext(
        account_url=doc["url"],
        thumbprints=tuple(thumbprints),
        issuer_domain_names=tuple(issuers),
        account_hash_prefix=doc["accountHashPrefix"],
        wildcard=doc["wildcard"],
        now=now,
    )


@dataclass(frozen=True)
class CorroborationRequest:
    type: ChallengeType
    identifier: Identifier
    wildcard: bool
    token: str
    key_authorization: str
    account_uri: str
    caa_identities: tuple[str, ...] | None
    # False: the CAA check alone, as the CA rechecks it at finalize (BR §3.2.2.8).
    validate: bool = True
    # dns-persist-01 and dns-account-01: what the CA's own check used (None otherwise).
    account: AccountContext | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": str(self.type),
            "identifier": self.identifier.to_json(),
            "wildcard": self.wildcard,
            "token": self.token,
            "keyAuthorization": self.key_authorization,
            "accountUri": self.account_uri,
            "caaIdentities": None if self.caa_identities is None else list(self.caa_identities),
            "validate": self.validate,
            "account": None if self.account is None else account_to_json(self.account),
        }

    @classmethod
    def from_json(cls, doc: object) -> CorroborationRequest:
        """Raise AcmeError (malformed) for anything but a well-formed request."""
        if not isinstance(doc, dict):
            raise malformed("a corroboration request is a JSON object")
        try:
            ctype = ChallengeType(str(doc.get("type")))
        except ValueError:
            raise malformed(f"unknown challenge type {doc.get('type')!r}") from None
        strings = ("token", "keyAuthorization", "accountUri")
        if not all(isinstance(doc.get(k), str) for k in strings):
            raise malformed(f"{', '.join(strings)} must be strings")
        identities = doc.get("caaIdentities")
        if identities is not None and not (
            isinstance(identities, list) and all(isinstance(i, str) for i in identities)
        ):
            raise malformed("caaIdentities must be null or an array of strings")
        wildcard = doc.get("wildcard") is True
        validate = doc.get("validate") is not False
        account: AccountContext | None = None
        if validate and ctype in ACCOUNT_BOUND:
            account = account_from_json(doc.get("account"))
            # One authorization, one account: the context may not say otherwise.
            if account.account_url != doc["accountUri"]:
                raise malformed("account.url must equal accountUri")
            if account.wildcard != wildcard:
                raise malformed("account.wildcard must equal wildcard")
        elif doc.get("account") is not None:
            raise malformed(f"account must be null for {'CAA only' if not validate else ctype}")
        return cls(
            type=ctype,
            identifier=parse_identifier(doc.get("identifier")),
            wildcard=wildcard,
            token=doc["token"],
            key_authorization=doc["keyAuthorization"],
            account_uri=doc["accountUri"],
            caa_identities=None if identities is None else tuple(identities),
            validate=validate,
            account=account,
        )


@dataclass(frozen=True)
class PerspectiveAnswer:
    perspective: str
    rir: str
    dcv: Problem | None
    caa: Problem | None

    @property
    def corroborates(self) -> bool:
        return self.dcv is None and self.caa is None

    @property
    def problem(self) -> Problem | None:
        return self.dcv or self.caa

    def to_json(self) -> dict[str, Any]:
        return {
            "perspective": self.perspective,
            "rir": self.rir,
            "dcv": None if self.dcv is None else self.dcv.to_json(),
            "caa": None if self.caa is None else self.caa.to_json(),
        }

    @classmethod
    def from_json(cls, doc: object) -> PerspectiveAnswer:
        if not isinstance(doc, dict):
            raise ValueError("the answer is not a JSON object")

        def prob(key: str) -> Problem | None:
            value = doc.get(key)
            if value is None:
                return None
            if not isinstance(value, dict):
                raise ValueError(f"{key} is neither null nor a problem")
            return Problem.from_json(value)

        return cls(str(doc.get("perspective")), str(doc.get("rir")), prob("dcv"), prob("caa"))


__all__ = [
    "PATH",
    "CorroborationRequest",
    "PerspectiveAnswer",
    "account_from_json",
    "account_to_json",
]

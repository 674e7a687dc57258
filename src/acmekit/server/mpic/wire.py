"""What the CA asks a remote perspective and what it answers (JSON over HTTPS).

    POST /v1/corroborate
    {"type": "http-01", "identifier": {"type": "dns", "value": "a.test"}, "wildcard": false,
     "token": "...", "keyAuthorization": "...", "accountUri": "https://ca/acct/1",
     "caaIdentities": ["acmekit"],          # null: the CA does not check CAA
     "validate": true}                      # false: CAA only (rechecked at finalize)

    200 {"perspective": "p1", "rir": "RIPE", "dcv": null, "caa": null}

`dcv` and `caa` are null when the check passed and the RFC 7807 problem when it failed;
`caa` is also null when it was not asked for (or the identifier is an IP address, which
CAA does not cover). The perspective answers 400 to a request it cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from acmekit.protocol.messages import ChallengeType, Identifier, parse_identifier
from acmekit.protocol.problems import Problem, malformed

PATH = "/v1/corroborate"


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
        return cls(
            type=ctype,
            identifier=parse_identifier(doc.get("identifier")),
            wildcard=doc.get("wildcard") is True,
            token=doc["token"],
            key_authorization=doc["keyAuthorization"],
            account_uri=doc["accountUri"],
            caa_identities=None if identities is None else tuple(identities),
            validate=doc.get("validate") is not False,
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


__all__ = ["PATH", "CorroborationRequest", "PerspectiveAnswer"]

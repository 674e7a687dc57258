"""The Validator's dispatch by challenge type, before anything is looked up: http-01
and tls-alpn-01 refuse a wildcard identifier (RFC 8555 §7.1.3), an unknown type is
malformed, and each problem carries the identifier."""

from __future__ import annotations

import pytest

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.validation import ValidationConfig, Validator

# A resolver nobody answers at: the cases below must end before any question.
SILENT = ("127.0.0.1", 9)


@pytest.mark.parametrize("ctype", [ChallengeType.HTTP_01, ChallengeType.TLS_ALPN_01])
async def test_a_wildcard_is_refused_for_http01_and_tlsalpn01(ctype: ChallengeType) -> None:
    validator = Validator(ValidationConfig(dns_resolver=SILENT, timeout=5.0))
    wildcard = Identifier(IdentifierType.DNS, "*.example.test")
    with pytest.raises(AcmeError) as info:
        await validator.validate(ctype, wildcard, "tok", "tok.thumb")
    assert info.value.problem.type == ProblemType.MALFORMED
    assert "cannot validate a wildcard identifier (RFC 8555 §7.1.3)" in (
        info.value.problem.detail or ""
    )
    assert info.value.problem.identifier == wildcard.to_json()


async def test_http01_as_a_plain_string_type_is_dispatched_as_http01() -> None:
    """The type compared by value, as `_run` compared it: "http-01" is http-01."""
    validator = Validator(ValidationConfig(dns_resolver=SILENT, timeout=5.0))
    wildcard = Identifier(IdentifierType.DNS, "*.example.test")
    with pytest.raises(AcmeError) as info:
        await validator.validate("http-01", wildcard, "tok", "tok.thumb")  # type: ignore[arg-type]
    assert info.value.problem.type == ProblemType.MALFORMED

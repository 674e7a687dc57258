"""Every name the CA's name policy lets into an order must also pass the lint before
signing: a name the lint refuses would fail finalize with a serverInternal (500) after
the client proved control of it, instead of a rejectedIdentifier at newOrder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol.messages import Identifier, IdentifierType, parse_dns_name
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.ca import load_or_create_issuer, subscriber_builder
from acmekit.server.lint import Linter
from acmekit.server.names import NamePolicy
from acmekit.server.validation.reserved import AddressPolicy

STRICT = NamePolicy((), AddressPolicy())

NAMES = [
    "ab--cd.acmekit-lint.de",  # R-LDH: reserved for future encodings (RFC 5891 §4.2.3.1)
    "www.zz--top.acmekit-lint.de",
    "xn--zz.acmekit-lint.de",
    "xn--ls8h.acmekit-lint.de",
    "xn--bcher-kva.acmekit-lint.de",
    "a-b.c--.acmekit-lint.de",
    "a--b.acmekit-lint.de",  # hyphens at 2-3: an ordinary LDH label
    "*.ab--cd.acmekit-lint.de",
]


def _refused(name: str) -> bool:
    try:
        STRICT.check([Identifier(IdentifierType.DNS, parse_dns_name(name))])
    except AcmeError as exc:
        assert exc.problem.type in (ProblemType.REJECTED_IDENTIFIER, ProblemType.MALFORMED)
        return True
    return False


@pytest.mark.parametrize("name", NAMES)
def test_what_the_policy_accepts_the_lint_passes(tmp_path: Path, name: str) -> None:
    if _refused(name):
        return  # refused up front, with a clean problem: nothing reaches the lint
    now = datetime.now(UTC)
    issuer = load_or_create_issuer(tmp_path, now)
    builder = subscriber_builder(
        issuer,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        [Identifier(IdentifierType.DNS, name)],
        serial=0x1234567890ABCDEF1,
        not_before=now,
        not_after=now + timedelta(days=90),
        crl_url="http://ca.acmekit-lint.de/crl/1.crl",
        issuer_url="http://ca.acmekit-lint.de/issuer.der",
    )
    throwaway = ec.generate_private_key(ec.SECP256R1())
    der = builder.sign(throwaway, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    report = Linter().lint(der)
    assert not report.errors, [str(f) for f in report.errors]


@pytest.mark.parametrize("name", ["ab--cd.acmekit-lint.de", "*.zz--top.acmekit-lint.de"])
def test_a_reserved_ldh_label_is_a_rejected_identifier(name: str) -> None:
    assert _refused(name)

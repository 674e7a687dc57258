"""A finalize CSR names exactly the order's identifiers (RFC 8555 §7.4). Its names were
lower-cased before they were compared, and the Kelvin sign (U+212A) lower-cases to ASCII
"k": a CSR naming "\u212aexample.test" (in its CN, a UTF8String, or in a dNSName, which
the parser reads although an IA5String is ASCII, RFC 5280 §4.2.1.6) passed for an order
of "kexample.test". It is now refused as a name not in the order."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.protocol.csr import check_csr, csr_names
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.keycheck import KeyPolicy, check_key

KELVIN = "\u212aexample.test"
ORDER = [Identifier(IdentifierType.DNS, "kexample.test")]


def _csr(*, san: str | None, cn: str | None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if san is not None:
        # DNSName's constructor refuses non-ASCII; a client's DER need not.
        name = x509.DNSName._init_without_validation(san)  # type: ignore[attr-defined]
        builder = builder.add_extension(x509.SubjectAlternativeName([name]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _check(der: bytes) -> x509.CertificateSigningRequest:
    account = ec.generate_private_key(ec.SECP384R1()).public_key()
    return check_csr(der, ORDER, account, lambda k: check_key(k, KeyPolicy()))


@pytest.mark.parametrize(
    ("san", "cn"),
    [(None, KELVIN), (KELVIN, None), (KELVIN, KELVIN), ("kexample.test", KELVIN)],
    ids=["cn", "san", "both", "cn-beside-ascii-san"],
)
def test_a_csr_naming_the_kelvin_sign_is_refused(san: str | None, cn: str | None) -> None:
    with pytest.raises(AcmeError) as err:
        _check(_csr(san=san, cn=cn))
    assert err.value.problem.type == ProblemType.BAD_CSR
    assert KELVIN in err.value.problem.detail


def test_the_ascii_spelling_still_passes_in_any_case() -> None:
    csr = _check(_csr(san="KExample.test", cn="kexample.TEST"))
    assert csr_names(csr) == set(ORDER)

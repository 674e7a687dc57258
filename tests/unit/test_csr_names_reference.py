"""finalize's name and extension rules (protocol.csr) against their earlier form.

The rules compare plain (type, value) strings and find extensions by OID; before, they
compared Identifiers and found extensions by class. `reference` below is that earlier
form, as it was; for CSRs of every mix of SAN kinds, common names (names in any case,
IP addresses in any spelling), basicConstraints and other extensions, and orders of
every mix of names, both must accept the same CSRs and refuse the others with the same
problem and the same words.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from acmekit.protocol.csr import check_csr, csr_names
from acmekit.protocol.messages import Identifier, IdentifierType, looks_like_ip
from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.keycheck import KeyPolicy, check_key

DNS, IP = IdentifierType.DNS, IdentifierType.IP


# --- the earlier form, as it was -------------------------------------------------------


def _bad_csr(detail: str) -> Exception:
    return problem(ProblemType.BAD_CSR, detail)


def _check_extensions(extensions: x509.Extensions) -> None:
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if constraints.ca:
        raise _bad_csr("the CSR asks for a CA certificate (basicConstraints CA:TRUE)")


def _name_identifier(text: str) -> Identifier:
    if looks_like_ip(text):
        return Identifier(IdentifierType.IP, ipaddress.ip_address(text).compressed)
    return Identifier(IdentifierType.DNS, text.lower())


def _san_names(extensions: x509.Extensions) -> tuple[set[Identifier], list[str]]:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), []
    names: set[Identifier] = set()
    others: list[str] = []
    for entry in san:
        if isinstance(entry, x509.DNSName):
            names.add(Identifier(IdentifierType.DNS, entry.value.lower()))
        elif isinstance(entry, x509.IPAddress):
            names.add(Identifier(IdentifierType.IP, entry.value.compressed))
        else:
            others.append(f"{type(entry).__name__} {entry.value!s}")
    return names, others


def _common_names(csr: x509.CertificateSigningRequest) -> set[Identifier]:
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {_name_identifier(str(attr.value)) for attr in cns}


def _describe(idents: Iterable[Identifier]) -> str:
    return ", ".join(i.value for i in sorted(idents))


def _check_names(
    csr: x509.CertificateSigningRequest,
    extensions: x509.Extensions,
    identifiers: Sequence[Identifier],
) -> None:
    sans, others = _san_names(extensions)
    if others:
        raise _bad_csr(f"the CSR has subjectAltName entries of unsupported kinds: {others}")
    cns = _common_names(csr)
    if sans and cns - sans:
        raise _bad_csr(f"the CSR's common name is not among its SANs: {_describe(cns - sans)}")
    names = sans | cns
    if not names:
        raise _bad_csr("the CSR names no identifiers (no subjectAltName and no common name)")
    wanted = {Identifier(i.type, i.value.lower()) for i in identifiers}
    missing, extra = wanted - names, names - wanted
    diffs = []
    if missing:
        diffs.append(f"missing {_describe(missing)}")
    if extra:
        diffs.append(f"not in the order: {_describe(extra)}")
    if diffs:
        raise _bad_csr("the CSR's names differ from the order's identifiers: " + "; ".join(diffs))


def reference(csr: x509.CertificateSigningRequest, identifiers: Sequence[Identifier]) -> None:
    """What check_csr ran after the key and signature checks (extensions parse here)."""
    extensions = csr.extensions
    _check_extensions(extensions)
    _check_names(csr, extensions, identifiers)


def reference_names(csr: x509.CertificateSigningRequest) -> set[Identifier]:
    return _san_names(csr.extensions)[0] | _common_names(csr)


# --- the comparison --------------------------------------------------------------------


@cache
def certificate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@cache
def account_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


DNS_TEXTS = ["a.example.com", "A.Example.COM", "b.example.com", "*.example.com", "xn--bcher-kva.de"]
IP_TEXTS = ["192.0.2.1", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "2001:0db8::0001", "::ffff:1.2.3.4"]
ORDER_POOL = [
    Identifier(DNS, "a.example.com"),
    Identifier(DNS, "b.example.com"),
    Identifier(DNS, "*.example.com"),
    Identifier(DNS, "B.Example.com"),  # upper case: compared in lower case
    Identifier(DNS, "xn--bcher-kva.de"),
    Identifier(IP, "192.0.2.1"),
    Identifier(IP, "2001:db8::1"),
    Identifier(IP, "::ffff:102:304"),
]
general_names = st.one_of(
    st.sampled_from(DNS_TEXTS).map(x509.DNSName),
    st.sampled_from(IP_TEXTS).map(lambda t: x509.IPAddress(ipaddress.ip_address(t))),
    st.just(x509.RFC822Name("a@example.com")),
    st.just(x509.UniformResourceIdentifier("https://a.example.com/")),
)
common_names = st.sampled_from([*DNS_TEXTS, *IP_TEXTS, "not a name", "1.2.3"])
usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)


def outcome(run: object) -> tuple[str, str] | None:
    try:
        run()  # type: ignore[operator]
    except AcmeError as err:
        return err.problem.type, err.problem.detail
    return None


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
@settings(max_examples=400, deadline=None)
@given(
    st.lists(general_names, max_size=4),
    st.lists(common_names, max_size=2),
    st.sampled_from([None, False, True]),
    st.booleans(),
    st.lists(st.sampled_from(ORDER_POOL), min_size=1, max_size=3, unique=True),
)
def test_same_answers_as_before(
    sans: list[x509.GeneralName],
    cns: list[str],
    ca: bool | None,
    usage_first: bool,
    order: list[Identifier],
) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if usage_first:  # another extension ahead of the ones looked for
        builder = builder.add_extension(usage, critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca, None), critical=True)
    signed = builder.sign(certificate_key(), hashes.SHA256())
    der = signed.public_bytes(serialization.Encoding.DER)

    def ours() -> None:
        check_csr(der, order, account_key(), lambda k: check_key(k, KeyPolicy()))

    def theirs() -> None:
        reference(x509.load_der_x509_csr(der), order)

    assert outcome(ours) == outcome(theirs)
    assert csr_names(signed) == reference_names(signed)

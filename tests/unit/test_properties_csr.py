"""Whatever a finalize request carries as its CSR, the checks answer badCSR, badPublicKey
or accept it; nothing else escapes `protocol.csr.check_csr`.

Random bytes; a valid CSR with bytes changed, cut or inserted (so the DER parses but its
pieces do not); and CSRs with a valid signature over odd contents: SANs of every kind,
common names of any text, and requested extensions whose value is random DER, so the
checks after the signature are reached as well.
"""

from __future__ import annotations

import ipaddress
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID, ObjectIdentifier
from hypothesis import given, settings
from hypothesis import strategies as st

from acmekit.protocol.csr import check_csr, csr_names, make_csr
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.keycheck import KeyPolicy, check_key

FAST = settings(max_examples=250, deadline=None)
ORDER = (
    Identifier(IdentifierType.DNS, "a.example.com"),
    Identifier(IdentifierType.IP, "192.0.2.1"),
)
ALLOWED = {str(ProblemType.BAD_CSR), str(ProblemType.BAD_PUBLIC_KEY)}


@cache
def certificate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@cache
def account_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@cache
def valid_csr() -> bytes:
    return make_csr(certificate_key(), [i.value for i in ORDER])


def checked(der: bytes) -> bool:
    """True if accepted; a problem of an allowed type otherwise; anything else fails."""
    try:
        csr = check_csr(der, ORDER, account_key().public_key(), lambda k: check_key(k, KeyPolicy()))
    except AcmeError as err:
        assert err.problem.type in ALLOWED, err.problem
        return False
    assert csr_names(csr) == set(ORDER)
    return True


def test_the_valid_csr_is_accepted() -> None:
    assert checked(valid_csr())


@FAST
@given(st.binary(max_size=600))
def test_random_bytes(der: bytes) -> None:
    checked(der)


@FAST
@given(st.data())
def test_mutated_valid_csr(data: st.DataObject) -> None:
    der = bytearray(valid_csr())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(der) - 1))
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if how == "flip":
            der[at] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del der[at : at + data.draw(st.integers(1, 8))]
        elif how == "insert":
            der[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del der[at:]
        if not der:
            break
    checked(bytes(der))


general_names = st.one_of(
    st.text(alphabet="abcXYZ019-.*_", min_size=1, max_size=70).map(x509.DNSName),
    st.ip_addresses().map(lambda a: x509.IPAddress(ipaddress.ip_address(a))),
    st.just(x509.RFC822Name("a@example.com")),
    st.just(x509.UniformResourceIdentifier("https://a.example.com/")),
    st.binary(max_size=10).map(
        lambda b: x509.OtherName(ObjectIdentifier("1.2.3.4"), b"\x04" + bytes([len(b)]) + b)
    ),
    st.sampled_from([x509.DNSName(i.value) for i in ORDER if i.type == IdentifierType.DNS]),
    st.just(x509.IPAddress(ipaddress.ip_address("192.0.2.1"))),
)
extension_oids = st.sampled_from(
    [
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ObjectIdentifier("1.3.6.1.5.5.7.1.31"),  # acmeIdentifier
        ObjectIdentifier("1.2.3.4.5"),
    ]
)


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")  # the long CNs we mean
@FAST
@given(
    st.lists(general_names, max_size=5),
    st.lists(
        st.text(min_size=1, max_size=80) | st.sampled_from(["a.example.com", "192.0.2.1"]),
        max_size=3,
    ),
    st.lists(
        st.tuples(extension_oids, st.binary(max_size=30)), max_size=2, unique_by=lambda t: t[0]
    ),
    st.booleans(),
)
def test_signed_csr_with_odd_contents(
    sans: list[x509.GeneralName],
    cns: list[str],
    raw_extensions: list[tuple[ObjectIdentifier, bytes]],
    ca: bool,
) -> None:
    # Without cryptography's own length check: a client's CSR need not meet it.
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False) for cn in cns]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    oids = {oid for oid, _ in raw_extensions}
    if sans and ExtensionOID.SUBJECT_ALTERNATIVE_NAME not in oids:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ExtensionOID.BASIC_CONSTRAINTS not in oids:
        builder = builder.add_extension(x509.BasicConstraints(ca, None), critical=True)
    for oid, value in raw_extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    der = builder.sign(certificate_key(), hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    checked(der)

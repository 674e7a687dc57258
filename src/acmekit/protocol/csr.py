"""The CSR a client sends to finalize an order, and the rules it must meet.

RFC 8555 §7.4: the CSR (PKCS#10, RFC 2986) carried in a finalize request must name
exactly the order's identifiers, and the server rejects it with `badCSR` otherwise.
The checks, in the order they run:

1. DER parses as a CertificationRequest; otherwise badCSR.
2. The subject public key passes `check_key`, the CA's key rule given by the caller (the
   server's configured `[keys]` policy, the same one account keys meet), which raises
   badPublicKey for a key it does not sign.
3. The self-signature verifies with that key and uses SHA-256 or stronger; otherwise badCSR.
4. The key is not the account key (§11.1: an account key must not also be a
   certificate key); otherwise badCSR.
5. Requested extensions parse; a request for a CA certificate (basicConstraints CA:TRUE)
   is refused. Other extensions are ignored: the certificate's extensions are the CA's
   choice, not the client's.
6. The names, the SAN dNSName and iPAddress entries plus the subject CN, equal the
   order's identifiers (compared case-insensitively; IPs compared as addresses). The CN
   must be one of the SANs, unless it is the only name. SANs of other kinds (email, URI)
   are refused, since the certificate would not carry them.

`make_csr` is the other side: the CSR our client and the fleet send, built to pass them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID, NameOID

from acmekit.protocol.jose import PrivateKey, PublicKey
from acmekit.protocol.messages import Identifier, IdentifierType, ascii_lower, looks_like_ip
from acmekit.protocol.problems import ProblemType, problem

_CSR_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
CN_MAX_LENGTH = 64  # RFC 5280 Appendix A: ub-common-name


def _bad_csr(detail: str) -> Exception:
    return problem(ProblemType.BAD_CSR, detail)


def _bad_key(detail: str) -> Exception:
    return problem(ProblemType.BAD_PUBLIC_KEY, detail)


def _parse(der: bytes) -> x509.CertificateSigningRequest:
    # InvalidVersion (a version other than v1, RFC 2986 §4.1) is no ValueError.
    try:
        return x509.load_der_x509_csr(der)
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        raise _bad_csr("the CSR is not a DER-encoded PKCS#10 request") from exc


@functools.lru_cache(maxsize=64)
def csr_public_key(csr: x509.CertificateSigningRequest) -> CertificatePublicKeyTypes:
    """The CSR's public key, parsed once for finalize's check and again not for the
    certificate's making: the last few are kept, by the CSR (hashed and compared by its
    DER, a lookup of well under a microsecond against a parse of some 60,000
    instructions for a P-256 key). A key that does not parse raises as `public_key`."""
    return csr.public_key()


def _public_key(csr: x509.CertificateSigningRequest) -> CertificatePublicKeyTypes:
    try:
        return csr_public_key(csr)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _bad_key("the CSR's public key is of an unknown or invalid kind") from exc


def _check_signature(csr: x509.CertificateSigningRequest) -> None:
    try:
        digest = csr.signature_hash_algorithm
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _bad_csr("the CSR's signature algorithm is not supported") from exc
    if not isinstance(digest, _CSR_HASHES):
        name = digest.name if digest is not None else "none"
        raise _bad_csr(f"the CSR is signed with {name}: use SHA-256 or stronger")
    if not valid:
        raise _bad_csr("the CSR's signature does not verify with its public key")


def _extensions(csr: x509.CertificateSigningRequest) -> x509.Extensions:
    try:
        return csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise _bad_csr(f"the CSR's requested extensions do not parse: {exc}") from exc


def _check_extensions(extensions: x509.Extensions) -> None:
    # Found by OID, which decides the value's class when the extensions parse, not by
    # class: `get_extension_for_class` asks each extension's value `isinstance`, an
    # abstract class's check (some 4,000 instructions) for each that is another kind.
    try:
        found = extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    except x509.ExtensionNotFound:
        return
    if cast(x509.BasicConstraints, found.value).ca:
        raise _bad_csr("the CSR asks for a CA certificate (basicConstraints CA:TRUE)")


# A name as the checks compare it: (the identifier type's text, the value as compared).
# Plain strings, hashed and compared in C, where an Identifier's hash and equality are
# Python calls (its type an Enum's); Identifiers again only in what is returned or told.
_Name = tuple[str, str]
_DNS, _IP = str(IdentifierType.DNS), str(IdentifierType.IP)


def _name_key(text: str) -> _Name:
    """A CN or dNSName as compared: IP text is an ip name, else a dns name (lower case)."""
    if looks_like_ip(text):
        return _IP, ipaddress.ip_address(text).compressed
    return _DNS, ascii_lower(text)


def _identifiers(names: Iterable[_Name]) -> set[Identifier]:
    return {Identifier(IdentifierType(kind), value) for kind, value in names}


def _san_keys(extensions: x509.Extensions) -> tuple[set[_Name], list[str]]:
    """(dNSName and iPAddress entries, descriptions of any other SAN entries)."""
    try:
        found = extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return set(), []
    names: set[_Name] = set()
    others: list[str] = []
    for entry in cast(x509.SubjectAlternativeName, found.value):
        if isinstance(entry, x509.DNSName):
            names.add((_DNS, ascii_lower(entry.value)))
        elif isinstance(entry, x509.IPAddress):
            names.add((_IP, entry.value.compressed))
        else:
            others.append(f"{type(entry).__name__} {entry.value!s}")
    return names, others


def _common_name_keys(csr: x509.CertificateSigningRequest) -> set[_Name]:
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {_name_key(str(attr.value)) for attr in cns}


def csr_names(csr: x509.CertificateSigningRequest) -> set[Identifier]:
    """Every name the CSR asks for: SAN dNSName / iPAddress entries and the subject CN."""
    sans, _ = _san_keys(_extensions(csr))
    return _identifiers(sans | _common_name_keys(csr))


def _describe(names: Iterable[_Name]) -> str:
    # In the order Identifiers sort in: by type, then value.
    return ", ".join(value for _, value in sorted(names))


def _check_names(
    csr: x509.CertificateSigningRequest,
    extensions: x509.Extensions,
    identifiers: Sequence[Identifier],
) -> None:
    sans, others = _san_keys(extensions)
    if others:
        raise _bad_csr(f"the CSR has subjectAltName entries of unsupported kinds: {others}")
    cns = _common_name_keys(csr)
    if sans and not cns <= sans:
        raise _bad_csr(f"the CSR's common name is not among its SANs: {_describe(cns - sans)}")
    names = sans | cns
    if not names:
        raise _bad_csr("the CSR names no identifiers (no subjectAltName and no common name)")
    wanted = {(str(i.type), i.value.lower()) for i in identifiers}
    if names == wanted:
        return
    missing, extra = wanted - names, names - wanted
    diffs = []
    if missing:
        diffs.append(f"missing {_describe(missing)}")
    if extra:
        diffs.append(f"not in the order: {_describe(extra)}")
    raise _bad_csr("the CSR's names differ from the order's identifiers: " + "; ".join(diffs))


def check_csr(
    der: bytes,
    identifiers: Sequence[Identifier],
    account_key: PublicKey,
    check_key: Callable[[CertificatePublicKeyTypes], None],
) -> x509.CertificateSigningRequest:
    """Parse and check a finalize CSR (RFC 8555 §7.4) against an order's identifiers.

    Returns the parsed CSR; raises AcmeError (badCSR or badPublicKey) when it fails a rule.
    """
    csr = _parse(der)
    key = _public_key(csr)
    check_key(key)
    _check_signature(csr)
    # Keys compare by their public values (OpenSSL's EVP_PKEY_eq: the same curve and
    # point, modulus and exponent, or Ed25519 bytes), which is equal SubjectPublicKeyInfo
    # DER for every key cryptography loads (named curves, uncompressed points), without
    # encoding both keys (an affine conversion, a field inversion, for each EC key).
    if key == account_key:
        raise _bad_csr("the CSR's key is the account key; use a separate certificate key")
    extensions = _extensions(csr)
    _check_extensions(extensions)
    _check_names(csr, extensions, identifiers)
    return csr


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_csr(key: PrivateKey, names: Sequence[str]) -> bytes:
    """A DER CSR for `names`: each a SAN (IP addresses as iPAddress, RFC 8738 §3), and
    the subject CN the first DNS name that fits one, or an empty subject if none does."""
    sans = [_general_name(name) for name in names]
    cns = [
        san.value
        for san in sans
        if isinstance(san, x509.DNSName) and len(san.value) <= CN_MAX_LENGTH
    ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cns[0])] if cns else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest).public_bytes(serialization.Encoding.DER)

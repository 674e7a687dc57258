"""The CA's keys and signatures: root, intermediate, subscriber and listener certificates.

How it works:

- `load_or_create_issuer` keeps the hierarchy in `state_dir`: `root.pem` / `root.key`
  (ECDSA P-384, 10 years, self-signed) and `intermediate.pem` / `intermediate.key`
  (ECDSA P-256, 5 years, pathLenConstraint 0). Each file is written to a temporary file
  created with its final mode (0600 for keys) and moved into place with `os.replace`, key
  before certificate, so a crash never leaves half a key or a certificate without its key.
  A later start loads them; the key objects then live in the `Issuer` for the process's
  life, so issuing a certificate never parses a PEM.
- With the intermediate's key in a PKCS#11 token (`[hsm]`), `create_external_hierarchy`
  (for `acmekit server keys`) writes the root and the intermediate's certificate for the
  token's public key, and `load_external_issuer` loads them for the server, which then
  signs through the token (acmekit.server.signing, acmekit.server.hsm); no private key
  of the intermediate is ever in a file or a Python object.
- `issue_certificate` builds a subscriber certificate from a checked CSR's key and the
  order's identifiers (RFC 8555 §7.4): the CSR's own subject and extensions are not copied.
  Profile: RFC 5280 §4.2 extensions (keyUsage, extKeyUsage, basicConstraints, SKI/AKI,
  subjectAltName critical when the subject is empty per §4.2.1.6, optional CRL
  distribution point), in the shape the CA/Browser Forum baseline requirements ask for.
- `listener_credentials` gives the HTTPS listener a certificate from the same hierarchy,
  so `root.pem` is the one file a client must trust.
- Serial numbers are 126 random bits with the top bit set: positive, at most 16 octets, and
  well over the 64 bits of entropy that RFC 5280 §4.1.2.2 and the baseline requirements
  ask for.

No clock is read here: every validity period derives from a `now` the caller passes in
(timezone-aware, UTC), so tests can issue and renew at any date they choose.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from acmekit.files import atomic_write
from acmekit.protocol import ct
from acmekit.protocol.keykinds import is_file_key, is_rsa_public
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.keycheck import spki_der
from acmekit.server.lint import Decoded, Linter, LintMismatch, LintRefused, Report, log_warnings
from acmekit.server.signing import (
    ExternalKey,
    ExternalPublicKey,
    SigningKey,
    assemble_signed,
    digest_for,
    external_signature,
    file_digest,
    file_key,
    is_external,
    read_tlv,
    sign_certificate,
    sign_crl,
    signed_parts,
)

log = logging.getLogger(__name__)

ROOT_LIFETIME = timedelta(days=3650)
INTERMEDIATE_LIFETIME = timedelta(days=1825)
LISTENER_LIFETIME = timedelta(days=365)
LISTENER_RENEW_BEFORE = timedelta(days=30)
# CA and listener certificates start a little in the past, for peers whose clocks lag.
BACKDATE = timedelta(hours=1)
SERIAL_BYTES = 16
MAX_CN_LENGTH = 64  # RFC 5280 ub-common-name
LISTENER_DEFAULT_HOSTS = ("localhost", "127.0.0.1")

_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DIR_MODE = 0o700


@dataclass(frozen=True)
class Issuer:
    """The CA hierarchy in memory: two certificates and their private keys.

    With the intermediate's key in a token (acmekit.server.hsm), `intermediate_key` is an
    ExternalKey: a handle that signs, no key material; the root's key is then not loaded
    at all (`root_key` None), as it is only needed to sign a new intermediate.
    """

    root_cert: x509.Certificate
    root_key: PrivateKeyTypes | None
    intermediate_cert: x509.Certificate
    intermediate_key: PrivateKeyTypes | ExternalKey

    def check_signer(self) -> None:
        """SignerUnavailable unless the intermediate's key can sign now (a file key can)."""
        key = self.intermediate_key
        if is_external(key):
            key.check()

    def chain_pem(self) -> bytes:
        """The intermediate in PEM: what follows the leaf in a certificate download."""
        return self._intermediate_pem

    @cached_property
    def _intermediate_pem(self) -> bytes:
        return self.intermediate_cert.public_bytes(serialization.Encoding.PEM)

    @cached_property
    def signature_algorithm(self) -> bytes:
        """The DER AlgorithmIdentifier of what the intermediate's file key signs (as the
        builder writes it); found once by signing a throwaway TBS, the first time a
        certificate is signed from its TBS (final_certificate)."""
        key = file_key(self.intermediate_key)
        cert = self.intermediate_cert
        sample = (
            x509.CertificateBuilder()
            .subject_name(cert.subject)
            .issuer_name(cert.subject)
            .public_key(cert.public_key())
            .serial_number(1)
            .not_valid_before(cert.not_valid_before_utc)
            .not_valid_after(cert.not_valid_after_utc)
            .sign(key, file_digest(key))
        )
        return signed_parts(sample.public_bytes(serialization.Encoding.DER))[1]

    @property
    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        """The AKI of what the intermediate signs: certificates, CRLs (RFC 5280 §4.2.1.1)."""
        return self._intermediate_aki

    @cached_property
    def _leaf_heads(self) -> dict[tuple[bool, bool], tuple[Ext, ...]]:
        """Subscriber certificates' first extensions by (RSA key, clientAuth): _leaf_head."""
        return {}

    @cached_property
    def _name(self) -> x509.Name:
        """The intermediate's subject: its certificates' issuer, parsed once."""
        return self.intermediate_cert.subject

    @cached_property
    def _file_signer(self) -> tuple[SigningKey, hashes.SHA256 | hashes.SHA384 | None]:
        """The intermediate's file key and its hash, found once (ValueError for a
        token's key, which goes through signing.py instead)."""
        key = file_key(self.intermediate_key)
        return key, file_digest(key)

    @cached_property
    def _intermediate_aki(self) -> x509.AuthorityKeyIdentifier:
        ski = self.intermediate_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)

    @cached_property
    def _leaf_aki(self) -> Ext:
        """The AKI of a subscriber certificate, encoded once (`encoded`)."""
        return _extension(encoded(self._intermediate_aki), critical=False)


# ---------------------------------------------------------------------------------------
# Serial numbers and signing


def new_serial(random_bytes: Callable[[int], bytes] = os.urandom) -> int:
    """A positive serial of 126 random bits and a fixed top bit (RFC 5280 §4.1.2.2)."""
    raw = random_bytes(SERIAL_BYTES)
    if len(raw) != SERIAL_BYTES:
        raise ValueError(f"random_bytes returned {len(raw)} bytes, wanted {SERIAL_BYTES}")
    return (int.from_bytes(raw, "big") & ((1 << 126) - 1)) | (1 << 126)


def _sign(builder: x509.CertificateBuilder, key: PrivateKeyTypes | ExternalKey) -> x509.Certificate:
    if is_external(key):
        return sign_certificate(builder, key)
    signer = file_key(key)
    return builder.sign(signer, file_digest(signer))


def _sign_leaf(builder: x509.CertificateBuilder, issuer: Issuer) -> x509.Certificate:
    """`_sign` with the intermediate's key, its file key's hash found once."""
    if is_external(issuer.intermediate_key):
        return sign_certificate(builder, issuer.intermediate_key)
    signer, digest = issuer._file_signer
    return builder.sign(signer, digest)


def sign_crl_with(
    builder: x509.CertificateRevocationListBuilder, key: PrivateKeyTypes | ExternalKey
) -> x509.CertificateRevocationList:
    """A CRL signed by the intermediate's key, a file key or one in a token (SHA-256,
    none with Ed25519, as before)."""
    if is_external(key):
        return sign_crl(builder, key)
    signer = file_key(key)
    digest = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, digest)


# ---------------------------------------------------------------------------------------
# Subscriber certificates


Ext = x509.Extension[x509.ExtensionType]


def _extension(value: x509.ExtensionType, *, critical: bool) -> Ext:
    return x509.Extension(value.oid, critical, value)


def encoded(extension: x509.ExtensionType) -> x509.UnrecognizedExtension:
    """`extension` as cryptography's builder writes it (its own encoder, through
    `ExtensionType.public_bytes`), kept as the value's DER: a builder copies an
    UnrecognizedExtension's bytes into the TBS as they are. For the extensions every
    subscriber certificate of an issuer, profile or URL carries alike, encoded once:
    per certificate, the builder then neither encodes them again nor asks, for each,
    whether it is an UnrecognizedExtension (an abstract class's `isinstance`, some
    4,000 instructions when it is not); the certificate's bytes are the same, and
    parsed back the extensions are of their own classes again (they are read by OID)."""
    return x509.UnrecognizedExtension(extension.oid, extension.public_bytes())


def _san(identifiers: Sequence[Identifier]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for ident in identifiers:
        if ident.type == IdentifierType.IP:
            names.append(x509.IPAddress(ipaddress.ip_address(ident.value)))
        else:
            names.append(x509.DNSName(ident.value))
    return x509.SubjectAlternativeName(names)


_NO_SUBJECT = x509.Name([])


def _subject(identifiers: Sequence[Identifier]) -> x509.Name:
    """The first DNS name as CN if it fits one; else `_NO_SUBJECT`, the empty subject."""
    for ident in identifiers:
        if ident.type == IdentifierType.DNS:
            if len(ident.value) <= MAX_CN_LENGTH:
                return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ident.value)])
            break
    return _NO_SUBJECT


@dataclass(frozen=True)
class LeafShape:
    """What a profile puts in a subscriber certificate beyond its names and key."""

    common_name: bool = True  # the first short DNS name as subject CN (else empty subject)
    subject_key_identifier: bool = True  # RFC 5280 §4.2.1.2; BR §7.1.2.7.6: NOT RECOMMENDED
    client_auth: bool = True  # id-kp-clientAuth beside id-kp-serverAuth


def _key_usage(rsa_key: bool) -> x509.KeyUsage:
    """digitalSignature, and keyEncipherment for an RSA key (BR §7.1.2.7.11)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_LEAF_EKU = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)
_SERVER_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
_LEAF_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)


@functools.lru_cache(maxsize=256)
def _crl_points(url: str) -> Ext:
    """The CRL distribution point (RFC 5280 §4.2.1.13): one URL per shard, each
    encoded once (`encoded`); a CA with more shards than kept encodes some again."""
    point = x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        reasons=None,
        crl_issuer=None,
    )
    return _extension(encoded(x509.CRLDistributionPoints([point])), critical=False)


# Baseline Requirements §7.1.2.7.9 and §7.1.6.1: a subscriber certificate asserts the
# reserved policy of its validation, domain-validated here.
DOMAIN_VALIDATED = x509.ObjectIdentifier("2.23.140.1.2.1")
_POLICIES = _extension(
    encoded(x509.CertificatePolicies([x509.PolicyInformation(DOMAIN_VALIDATED, None)])),
    critical=False,
)


@functools.lru_cache(maxsize=16)
def _aia(issuer_url: str) -> Ext:
    """caIssuers (RFC 5280 §4.2.2.1): where the intermediate can be fetched over HTTP.
    One URL per CA: encoded once (`encoded`)."""
    where = x509.UniformResourceIdentifier(issuer_url)
    aia = x509.AuthorityInformationAccess(
        [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, where)]
    )
    return _extension(encoded(aia), critical=False)


def _leaf_head(issuer: Issuer, *, rsa_key: bool, client_auth: bool) -> tuple[Ext, ...]:
    """The first three extensions of every subscriber certificate of one kind
    (`encoded`), made once per kind and issuer."""
    heads = issuer._leaf_heads
    kind = (rsa_key, client_auth)
    head = heads.get(kind)
    if head is None:
        head = (
            _extension(encoded(_LEAF_CONSTRAINTS), critical=True),
            _extension(encoded(_key_usage(rsa_key)), critical=True),
            _extension(encoded(_LEAF_EKU if client_auth else _SERVER_EKU), critical=False),
        )
        heads[kind] = head
    return head


_NO_OFFSET = timedelta(0)


def _naive_utc(time: datetime) -> datetime:
    """`time` as the builder keeps its validity times: naive, in UTC. The builder makes
    it with `replace(tzinfo=None)`, whose keyword parsing alone is some 10,000
    instructions; for a time in UTC (every one the CA passes) the same value is put
    together from its date and time here, in a third of that. Any other time is left
    to the builder's own conversion."""
    if time.utcoffset() == _NO_OFFSET:
        return datetime.combine(time.date(), time.time())
    return time


_BIT_STRING = 0x03


def key_identifier(key: CertificatePublicKeyTypes) -> x509.SubjectKeyIdentifier:
    """The subscriber's Subject Key Identifier, RFC 5280 §4.2.1.2 method (1), as
    `SubjectKeyIdentifier.from_public_key` makes it: the SHA-1 of the subjectPublicKey
    BIT STRING's value (an EC key's X9.62 point, an RSA key's PKCS#1 RSAPublicKey), read
    from the SubjectPublicKeyInfo that the key rule's blocklist hash encoded
    (`keycheck.spki_der`), not from a second encoding of the key."""
    spki = spki_der(key)
    _, start, _ = read_tlv(spki)  # SubjectPublicKeyInfo ::= SEQUENCE {
    _, _, algorithm_end = read_tlv(spki, start)  # algorithm AlgorithmIdentifier,
    tag, bits, end = read_tlv(spki, algorithm_end)  # subjectPublicKey BIT STRING }
    if tag != _BIT_STRING or bits == end or spki[bits] != 0:
        raise ValueError("a SubjectPublicKeyInfo whose key is no BIT STRING of whole octets")
    return x509.SubjectKeyIdentifier(hashlib.sha1(spki[bits + 1 : end]).digest())


def subscriber_builder(
    issuer: Issuer,
    key: CertificatePublicKeyTypes,
    identifiers: Sequence[Identifier],
    *,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    crl_url: str | None,
    issuer_url: str | None = None,
    shape: LeafShape = LeafShape(),
) -> x509.CertificateBuilder:
    """The to-be-signed subscriber certificate: what the linter sees and the key signs."""
    if not identifiers:
        raise ValueError("a certificate needs at least one identifier")
    subject = _subject(identifiers) if shape.common_name else _NO_SUBJECT
    extensions = list(_leaf_head(issuer, rsa_key=is_rsa_public(key), client_auth=shape.client_auth))
    if shape.subject_key_identifier:
        extensions.append(_extension(key_identifier(key), critical=False))
    extensions.append(issuer._leaf_aki)
    # Critical when the subject is empty (RFC 5280 §4.2.1.6): the one empty subject is
    # _NO_SUBJECT, told by identity (a Name's length is a Python sum per RDN).
    extensions.append(_extension(_san(identifiers), critical=subject is _NO_SUBJECT))
    extensions.append(_POLICIES)
    if issuer_url is not None:
        extensions.append(_aia(issuer_url))
    if crl_url is not None:
        extensions.append(_crl_points(crl_url))
    # The builder is given its extensions at once (its constructor's `extensions`), the
    # fields through its setters and their checks. Added one at a time, each extension
    # cost a copy of the builder and its list, an abstract class's `isinstance` and a
    # comparison of its OID with each one before it: some 100,000 instructions a
    # certificate. Each OID here is another by construction (and a certificate with
    # one twice would not parse back).
    return (
        x509.CertificateBuilder(extensions=extensions)
        .issuer_name(issuer._name)
        .subject_name(subject)
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(_naive_utc(not_before))
        .not_valid_after(_naive_utc(not_after))
    )


def issue_certificate(
    issuer: Issuer,
    csr: x509.CertificateSigningRequest,
    identifiers: Sequence[Identifier],
    *,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    crl_url: str | None = None,
    issuer_url: str | None = None,
    shape: LeafShape = LeafShape(),
    linter: Linter | None = None,
) -> x509.Certificate:
    """Sign a subscriber certificate for `identifiers` over the (already checked) CSR's key;
    with a `linter`, only once its lint passed (lint.py: LintRefused otherwise)."""
    builder = subscriber_builder(
        issuer,
        csr.public_key(),
        identifiers,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        crl_url=crl_url,
        issuer_url=issuer_url,
        shape=shape,
    )
    if linter is None or not linter.enabled:
        cert = _sign_leaf(builder, issuer)
    else:
        cert = linter.sign(builder, issuer.intermediate_key)
    log.debug("issued certificate serial=%x names=%d", serial, len(identifiers))
    return cert


def sign_builder(
    builder: x509.CertificateBuilder, issuer: Issuer, linter: Linter | None = None
) -> x509.Certificate:
    """Sign with the intermediate's key (file or token), linted first with a `linter`
    that is on (one that is off signs as `Linter.sign` would, without the lookups)."""
    if linter is None or not linter.enabled:
        return _sign_leaf(builder, issuer)
    return linter.sign(builder, issuer.intermediate_key)


def precertificate_builder(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    """RFC 6962 §3.1: the final certificate's TBS plus the critical poison extension."""
    return builder.add_extension(x509.PrecertPoison(), critical=True)


def final_builder(
    precert: x509.Certificate, sct_list: x509.ExtensionType
) -> x509.CertificateBuilder:
    """RFC 6962 §3.3: the precertificate's TBS, field by field and extension by extension
    in the same order, with the poison left out and the SCT list added last. Built from
    the precertificate itself (not from the order again), so a process that resumes an
    issuance after a crash signs exactly what the logs saw."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(precert.subject)
        .issuer_name(precert.issuer)
        .public_key(precert.public_key())
        .serial_number(precert.serial_number)
        .not_valid_before(precert.not_valid_before_utc)
        .not_valid_after(precert.not_valid_after_utc)
    )
    for ext in precert.extensions:
        if ext.oid != x509.oid.ExtensionOID.PRECERT_POISON:
            builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.add_extension(sct_list, critical=False)


# What a linted certificate's warnings are compared by: (code, message).
Warnings = frozenset[tuple[str, str | None]]


@dataclass(frozen=True)
class Linted:
    """What a precertificate's lint hands to its final certificate's: its warnings (the
    final certificate shares them: logged once) and its decoded document, which the
    final certificate's lint reuses (lint.Decoded). Empty for a precertificate that was
    not linted here (lint off, a token's key, a resumed issuance)."""

    warnings: Warnings = frozenset()
    decoded: Decoded | None = None


def precertificate(
    builder: x509.CertificateBuilder, issuer: Issuer, linter: Linter | None = None
) -> tuple[x509.Certificate, Linted]:
    """RFC 6962 §3.1: `builder`'s TBS plus the critical poison, linted (pkilint's
    precertificate rules) and signed; with what its lint leaves for the final
    certificate's (`final_certificate`). With a file key, the real key signs the
    linted copy's TBS itself (one encoding of the builder, not two); with a token's key,
    Linter.sign as for any certificate."""
    pre = precertificate_builder(builder)
    key = issuer.intermediate_key
    if linter is None or not linter.enabled or not is_file_key(key):
        return sign_builder(pre, issuer, linter), Linted()
    signer = file_key(key)
    copy = pre.sign(linter.keys.like(signer), file_digest(signer))
    der = copy.public_bytes(serialization.Encoding.DER)
    report, decoded = linter.lint_precertificate(der)
    warnings = _judge(report, copy.serial_number, frozenset())
    tbs, algorithm, _ = signed_parts(der)
    return _signed(tbs, algorithm, issuer), Linted(warnings, decoded)


def final_certificate(
    precert: x509.Certificate,
    scts: Sequence[ct.SignedCertificateTimestamp],
    issuer: Issuer,
    linter: Linter | None = None,
    linted: Linted = Linted(),
    precert_der: bytes | None = None,
) -> x509.Certificate:
    """RFC 6962 §3.3: the certificate that `precert` (`precert_der` its DER where the
    caller has it) promised, with `scts` embedded; the
    same TBS as `final_builder` gives, cut from the precertificate's DER (ct.final_tbs)
    instead of parsing every extension into objects and encoding them all again.

    As any certificate: linted before the real key signs (the linted copy carries the
    signature bytes of the precertificate's linted copy, which no lint reads), from the
    precertificate's decoded document where `linted` has it (lint.Decoded: the same
    findings as a fresh lint); its warnings that the precertificate's lint logged
    already are not logged again. Then signed under the precertificate's
    signatureAlgorithm by the same key (`_signed`)."""
    der = precert_der or precert.public_bytes(serialization.Encoding.DER)
    precert_tbs, algorithm, placeholder = signed_parts(der)
    tbs = ct.final_tbs(precert_tbs, scts)
    if linter is not None and linter.enabled:
        if linted.decoded is not None:
            placeholder = linted.decoded.signature
        copy = assemble_signed(tbs, algorithm, placeholder)
        report = linter.lint_final(copy, linted.decoded)
        _judge(report, precert.serial_number, linted.warnings)
    return _signed(tbs, algorithm, issuer)


def _judge(report: Report, serial: int, known: Warnings) -> Warnings:
    """LintRefused unless `report` passes; its warnings not in `known` are logged as
    Linter.sign logs them (lint.log_warnings: at WARNING the first time a code is seen),
    all of them returned."""
    fresh = tuple(f for f in report.warnings if (f.code, f.message) not in known)
    if fresh:
        log_warnings(format(serial, "x"), fresh)
    if report.errors:
        shown = "; ".join(str(f) for f in report.errors)
        log.error("lint refused serial %x: %s", serial, shown)
        raise LintRefused(report)
    return frozenset((f.code, f.message) for f in report.warnings)


def _signed(tbs: bytes, algorithm: bytes, issuer: Issuer) -> x509.Certificate:
    """`tbs` signed by the intermediate's key under `algorithm` (DER), parsed back.

    Checked before it is returned: `algorithm` is the one the builder gives this key (a
    token's signature is verified against its public key in signing.py), and the parsed
    certificate's TBS is `tbs` to the byte."""
    key = issuer.intermediate_key
    if is_file_key(key) and algorithm != issuer.signature_algorithm:
        raise LintMismatch("the TBS's signature algorithm is not the intermediate key's")
    cert = x509.load_der_x509_certificate(assemble_signed(tbs, algorithm, _signature(tbs, key)))
    if cert.tbs_certificate_bytes != tbs:
        raise LintMismatch(f"serial {cert.serial_number:x}: the TBSCertificate does not round-trip")
    if not is_file_key(key):
        public = issuer.intermediate_cert.public_key()
        expected = digest_for(public) if isinstance(public, ExternalPublicKey) else None
        if expected is None or cert.signature_hash_algorithm is None:
            raise LintMismatch("a token's certificate without a hash in its signature")
        if cert.signature_hash_algorithm.name != expected.name:
            raise LintMismatch("the TBS's signature algorithm is not the token key's")
    return cert


def _signature(tbs: bytes, key: PrivateKeyTypes | ExternalKey) -> bytes:
    """The intermediate's signature over `tbs`, as its certificates' builder makes it:
    ECDSA with the curve's hash, RSA PKCS#1 v1.5 with SHA-256, Ed25519 (file_digest);
    a token's key through signing.py (verified there)."""
    if is_external(key):
        return external_signature(key, tbs)
    signer = file_key(key)
    if isinstance(signer, ed25519.Ed25519PrivateKey):
        return signer.sign(tbs)
    digest = file_digest(signer) or hashes.SHA256()
    if isinstance(signer, rsa.RSAPrivateKey):
        return signer.sign(tbs, padding.PKCS1v15(), digest)
    return signer.sign(tbs, ec.ECDSA(digest))


def pem_chain(cert: x509.Certificate, issuer: Issuer) -> str:
    """Leaf and intermediate in PEM, as served by certificate download (RFC 8555 §7.4.2)."""
    leaf = cert.public_bytes(serialization.Encoding.PEM)
    return (leaf + issuer.chain_pem()).decode("ascii")


# ---------------------------------------------------------------------------------------
# Files in the state directory


def _key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _save_pair(state_dir: Path, stem: str, cert: x509.Certificate, key: PrivateKeyTypes) -> None:
    atomic_write(state_dir / f"{stem}.key", _key_pem(key), _KEY_MODE)
    atomic_write(
        state_dir / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE
    )


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_pair(state_dir: Path, stem: str) -> tuple[x509.Certificate, PrivateKeyTypes] | None:
    """The certificate and key stored under `stem`, or None when either file is missing."""
    cert_path, key_path = state_dir / f"{stem}.pem", state_dir / f"{stem}.key"
    if not (cert_path.exists() and key_path.exists()):
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if _spki(cert.public_key()) != _spki(file_key(key).public_key()):
        raise ValueError(f"{key_path.name} does not hold the key of {cert_path.name}")
    return cert, key


# ---------------------------------------------------------------------------------------
# The hierarchy


def _ca_name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    """keyCertSign and cRLSign; the intermediate may also sign OCSP responses and CRLs."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_builder(
    subject: x509.Name, key: ExternalPublicKey, now: datetime, lifetime: timedelta
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key)
        .serial_number(new_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


def _create_root(name: str, now: datetime) -> tuple[x509.Certificate, PrivateKeyTypes]:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = _ca_name(f"{name} root", name)
    builder = (
        _ca_builder(subject, key.public_key(), now, ROOT_LIFETIME)
        .issuer_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(digital_signature=False), critical=True)
    )
    return _sign(builder, key), key


def _create_intermediate(
    root_cert: x509.Certificate, root_key: PrivateKeyTypes, name: str, now: datetime
) -> tuple[x509.Certificate, PrivateKeyTypes]:
    key = ec.generate_private_key(ec.SECP256R1())
    return intermediate_certificate(root_cert, root_key, key.public_key(), name, now), key


def intermediate_certificate(
    root_cert: x509.Certificate,
    root_key: PrivateKeyTypes,
    public: ExternalPublicKey,
    name: str,
    now: datetime,
) -> x509.Certificate:
    """The intermediate's certificate for `public`, signed by the root."""
    root_ski = root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    lifetime = min(INTERMEDIATE_LIFETIME, root_cert.not_valid_after_utc - now)
    builder = (
        _ca_builder(_ca_name(f"{name} intermediate", name), public, now, lifetime)
        .issuer_name(root_cert.subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
    )
    return _sign(builder, root_key)


def _ensure_dir(state_dir: Path) -> None:
    if not state_dir.exists():
        state_dir.mkdir(mode=_DIR_MODE, parents=True)
        os.chmod(state_dir, _DIR_MODE)  # mkdir's mode is filtered by the umask


def _warn_if_renamed(root: x509.Certificate, name: str) -> None:
    """The name applies when the hierarchy is made; a kept root keeps its own."""
    held = root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if held and held[0].value != name:
        log.warning(
            "the stored root is named %r, not %r: the name applies only to a new "
            "hierarchy (acmekit server keys --name makes one)",
            held[0].value,
            name,
        )


def load_or_create_issuer(state_dir: Path, now: datetime, *, name: str = "acmekit") -> Issuer:
    """Load the root and intermediate from `state_dir`, creating what is missing.

    A new root always gets a new intermediate; an existing root keeps its intermediate.
    """
    _ensure_dir(state_dir)
    root = _load_pair(state_dir, "root")
    intermediate = _load_pair(state_dir, "intermediate") if root is not None else None
    if root is not None:
        _warn_if_renamed(root[0], name)
    if root is None:
        root = _create_root(name, now)
        _save_pair(state_dir, "root", *root)
        log.info("created root %s", root[0].subject.rfc4514_string())
    if intermediate is None:
        intermediate = _create_intermediate(*root, name, now)
        _save_pair(state_dir, "intermediate", *intermediate)
        log.info("created intermediate %s", intermediate[0].subject.rfc4514_string())
    return Issuer(
        root_cert=root[0],
        root_key=root[1],
        intermediate_cert=intermediate[0],
        intermediate_key=intermediate[1],
    )


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise ValueError(f"{path} is missing (run `acmekit server keys` first)") from None


def load_external_issuer(state_dir: Path, key: Callable[[x509.Certificate], ExternalKey]) -> Issuer:
    """The hierarchy whose intermediate's key is outside the process (a token):
    `root.pem` and `intermediate.pem` from `state_dir`, `key(intermediate)` to sign.
    Nothing is created here: `acmekit server keys` made the hierarchy, and a server
    that made a file key in its place would quietly stop using the token."""
    root_cert = _load_cert(state_dir / "root.pem")
    intermediate_cert = _load_cert(state_dir / "intermediate.pem")
    if (state_dir / "intermediate.key").exists():
        raise ValueError(
            f"{state_dir / 'intermediate.key'} exists, but the intermediate's key is in a "
            "token ([hsm]); remove the file key"
        )
    try:
        intermediate_cert.verify_directly_issued_by(root_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ValueError("intermediate.pem was not issued by root.pem") from None
    return Issuer(root_cert, None, intermediate_cert, key(intermediate_cert))


def create_external_hierarchy(
    state_dir: Path,
    root_key_path: Path,
    public: ExternalPublicKey,
    now: datetime,
    *,
    name: str = "acmekit",
) -> tuple[x509.Certificate, x509.Certificate, bool]:
    """Write `root.pem` (and the root's key to `root_key_path`, mode 0600, if the root is
    new) and `intermediate.pem` for `public`, the token's key, signed by the root.
    An existing root (`root.pem` with its key at `root_key_path`) signs the new
    intermediate. Returns (root, intermediate, whether the root is new)."""
    _ensure_dir(state_dir)
    if (state_dir / "intermediate.pem").exists() or (state_dir / "intermediate.key").exists():
        raise ValueError(f"{state_dir} already has an intermediate; use a new state directory")
    root_pem = state_dir / "root.pem"
    created = not root_pem.exists()
    if created:
        if root_key_path.exists():
            raise ValueError(f"{root_key_path} exists but {root_pem} does not")
        root_cert, root_key = _create_root(name, now)
        root_key_path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        atomic_write(root_key_path, _key_pem(root_key), _KEY_MODE)
        atomic_write(root_pem, root_cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    else:
        root_cert = _load_cert(root_pem)
        try:
            loaded = serialization.load_pem_private_key(root_key_path.read_bytes(), password=None)
        except FileNotFoundError:
            raise ValueError(f"the root's key {root_key_path} is missing") from None
        if _spki(root_cert.public_key()) != _spki(file_key(loaded).public_key()):
            raise ValueError(f"{root_key_path} does not hold the key of {root_pem}")
        root_key = loaded
    intermediate = intermediate_certificate(root_cert, root_key, public, name, now)
    atomic_write(
        state_dir / "intermediate.pem",
        intermediate.public_bytes(serialization.Encoding.PEM),
        _CERT_MODE,
    )
    return root_cert, intermediate, created


# ---------------------------------------------------------------------------------------
# The HTTPS listener's own certificate


def _host_identifier(host: str) -> Identifier:
    text = host.strip().removeprefix("[").removesuffix("]")
    try:
        return Identifier(IdentifierType.IP, ipaddress.ip_address(text).compressed)
    except ValueError:
        return Identifier(IdentifierType.DNS, text.lower().rstrip("."))


def _listener_identifiers(hosts: Sequence[str]) -> list[Identifier]:
    """The listener's names: the given hosts first, then localhost and 127.0.0.1."""
    seen: dict[Identifier, None] = {}
    for host in (*hosts, *LISTENER_DEFAULT_HOSTS):
        if host.strip():
            seen.setdefault(_host_identifier(host), None)
    return list(seen)


def _cert_identifiers(cert: x509.Certificate) -> set[Identifier]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns = {Identifier(IdentifierType.DNS, n.lower()) for n in san.get_values_for_type(x509.DNSName)}
    ips = {
        Identifier(IdentifierType.IP, ip.compressed)
        for ip in san.get_values_for_type(x509.IPAddress)
    }
    return dns | ips


def _listener_usable(
    chain_path: Path, key_path: Path, issuer: Issuer, wanted: set[Identifier], now: datetime
) -> bool:
    """True when the stored listener files cover `wanted`, have time left, and fit `issuer`."""
    if not (chain_path.exists() and key_path.exists()):
        return False
    try:
        certs = x509.load_pem_x509_certificates(chain_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        leaf = certs[0]
        leaf.verify_directly_issued_by(issuer.intermediate_cert)
    except (ValueError, TypeError, IndexError, InvalidSignature) as exc:
        log.info("listener certificate unusable, reissuing: %s", exc)
        return False
    return (
        _spki(leaf.public_key()) == _spki(file_key(key).public_key())
        and wanted <= _cert_identifiers(leaf)
        and leaf.not_valid_after_utc - now > LISTENER_RENEW_BEFORE
        and certs[1:] == [issuer.intermediate_cert]
    )


def listener_credentials(
    issuer: Issuer, state_dir: Path, hosts: Sequence[str], now: datetime
) -> tuple[Path, Path]:
    """(chain PEM path, key path) for the HTTPS listener, reissued only when needed.

    The chain file holds the leaf then the intermediate. The files are reused when they
    cover `hosts` (plus localhost and 127.0.0.1), were issued by this intermediate and
    have more than 30 days left.
    """
    _ensure_dir(state_dir)
    chain_path, key_path = state_dir / "listener.pem", state_dir / "listener.key"
    identifiers = _listener_identifiers(hosts)
    if _listener_usable(chain_path, key_path, issuer, set(identifiers), now):
        return chain_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + LISTENER_LIFETIME, issuer.intermediate_cert.not_valid_after_utc)
    builder = subscriber_builder(
        issuer,
        key.public_key(),
        identifiers,
        serial=new_serial(),
        not_before=now - BACKDATE,
        not_after=not_after,
        crl_url=None,
    )
    cert = _sign(builder, issuer.intermediate_key)
    atomic_write(key_path, _key_pem(key), _KEY_MODE)
    atomic_write(chain_path, pem_chain(cert, issuer).encode("ascii"), _CERT_MODE)
    log.info("issued listener certificate for %s", ", ".join(i.value for i in identifiers))
    return chain_path, key_path

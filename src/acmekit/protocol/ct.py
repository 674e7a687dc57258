"""Certificate Transparency structures (RFC 6962), sans I/O: what a log signs and what a
CA or monitor checks.

- §3.4 `MerkleTreeLeaf` / `TimestampedEntry`, the bytes hashed into the tree;
- §3.2 SCT v1: its TLS encoding, the bytes its signature covers, and verification;
- §3.5 the STH signature input (`TreeHeadSignature`);
- §3.2 precertificate entries: the TBSCertificate without the poison extension and the
  SHA-256 of the issuer's SubjectPublicKeyInfo;
- the log ID (§3.2: SHA-256 of the log key's SubjectPublicKeyInfo DER);
- §3.3 the `SignedCertificateTimestampList` that a certificate embeds;
- Chrome's log list v3 (one JSON document naming operators and their logs).

TLS encoding (RFC 5246 §4): integers big-endian, `opaque x<0..2^N-1>` carries a length
prefix of as many bytes as N needs. Signatures are `DigitallySigned` (RFC 5246 §4.7):
hash algorithm byte, signature algorithm byte, 2-byte length, signature.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# 1.3.6.1.4.1.11129.2.4.3: critical, NULL; makes a certificate a precertificate (§3.1).
POISON_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.3")
# 1.3.6.1.4.1.11129.2.4.4: EKU of a Precertificate Signing Certificate (§3.1).
PRECERT_SIGNING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")
# 1.3.6.1.4.1.11129.2.4.2: the embedded SCT list extension (§3.3).
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


class CtError(ValueError):
    """Bytes or a document that do not parse as the structure they claim to be."""


class Version(IntEnum):
    V1 = 0


class LogEntryType(IntEnum):
    X509_ENTRY = 0
    PRECERT_ENTRY = 1


class SignatureType(IntEnum):
    CERTIFICATE_TIMESTAMP = 0
    TREE_HASH = 1


class MerkleLeafType(IntEnum):
    TIMESTAMPED_ENTRY = 0


class HashAlgorithm(IntEnum):
    SHA256 = 4


class SignatureAlgorithm(IntEnum):
    ECDSA = 3


# ----- TLS encoding -----


def opaque(data: bytes, length_bytes: int) -> bytes:
    """`opaque x<0..2^(8*length_bytes)-1>`: length prefix, then the bytes."""
    if len(data) >= 1 << (8 * length_bytes):
        raise CtError(f"{len(data)} bytes do not fit a {length_bytes}-byte length")
    return len(data).to_bytes(length_bytes, "big") + data


class Reader:
    """Reads TLS-encoded fields front to back; any shortfall is a CtError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CtError("truncated structure")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def opaque(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise CtError(f"{len(self.data) - self.pos} trailing bytes")


# ----- entries (§3.1, §3.2, §3.4) -----


@dataclass(frozen=True)
class PrecertEntry:
    """`PreCert`: who issued it and what it will be (§3.2)."""

    issuer_key_hash: bytes  # SHA-256 of the issuer's SubjectPublicKeyInfo DER
    tbs_certificate: bytes  # DER of the TBSCertificate without the poison extension

    def encode(self) -> bytes:
        if len(self.issuer_key_hash) != 32:
            raise CtError("issuer_key_hash must be 32 bytes")
        return self.issuer_key_hash + opaque(self.tbs_certificate, 3)


@dataclass(frozen=True)
class SignedEntry:
    """The `signed_entry` of a TimestampedEntry: an X.509 certificate or a PreCert."""

    entry_type: LogEntryType
    body: bytes  # ASN.1Cert DER, or the encoded PreCert

    @classmethod
    def x509(cls, cert_der: bytes) -> SignedEntry:
        return cls(LogEntryType.X509_ENTRY, cert_der)

    @classmethod
    def precert(cls, entry: PrecertEntry) -> SignedEntry:
        return cls(LogEntryType.PRECERT_ENTRY, entry.encode())

    def encode(self) -> bytes:
        """entry_type, then the entry as the TimestampedEntry and the SCT input carry it."""
        head = int(self.entry_type).to_bytes(2, "big")
        if self.entry_type is LogEntryType.X509_ENTRY:
            return head + opaque(self.body, 3)
        return head + self.body

    def identity(self) -> bytes:
        """What makes two submissions the same entry (for returning the same SCT)."""
        return hashlib.sha256(self.encode()).digest()


def issuer_key_hash(issuer: x509.Certificate) -> bytes:
    return hashlib.sha256(spki_der(issuer)).digest()


def spki_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def is_precertificate(cert: x509.Certificate) -> bool:
    return any(ext.oid == POISON_OID for ext in cert.extensions)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def is_precert_signing_certificate(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return PRECERT_SIGNING_OID in eku


def precert_entry(precert: x509.Certificate, issuer: x509.Certificate) -> PrecertEntry:
    """§3.2: the TBS without the poison (and without any SCT list), and the key hash
    of the certificate that signed it (the final certificate's issuer)."""
    return PrecertEntry(issuer_key_hash(issuer), strip_extensions(precert.tbs_certificate_bytes))


def final_certificate_entry(cert: x509.Certificate, issuer: x509.Certificate) -> PrecertEntry:
    """The PreCert entry a final certificate with embedded SCTs corresponds to (§3.3):
    its TBS with the SCT list removed; what a verifier of embedded SCTs signs over."""
    return PrecertEntry(issuer_key_hash(issuer), strip_extensions(cert.tbs_certificate_bytes))


# A precertificate's TBS and the final certificate's differ only in these extensions
# (§3.1, §3.3); the log signs over the TBS without them. Done on the DER directly: the
# rest of the TBS must stay byte for byte what the CA signed.


def _der_oid(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


def _tlv_at(data: bytes, pos: int, limit: int) -> tuple[int, int, int]:
    """The DER TLV at `pos`, which must end by `limit`: its tag, where its value starts
    and where it ends (offsets, no copies: a TBS is cut once per submission)."""
    if pos + 2 > limit:
        raise CtError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    if first & 0x80:
        count = first & 0x7F
        start = pos + 2 + count
        if count == 0 or count > 4 or start > limit:
            raise CtError("bad DER length")
        end = start + int.from_bytes(data[pos + 2 : start], "big")
    else:
        start = pos + 2
        end = start + first
    if end > limit:
        raise CtError("truncated DER")
    return tag, start, end


def tbs_certificate_der(cert_der: bytes) -> bytes:
    """The TBSCertificate inside a certificate's DER (RFC 5280 §4.1.1.1), sliced out as
    it came: the bytes its signature covers. (cryptography's `tbs_certificate_bytes`
    encodes the parsed structure again, which costs more than a signature's hashing.)"""
    tag, start, end = _tlv_at(cert_der, 0, len(cert_der))
    if tag != 0x30 or end != len(cert_der):
        raise CtError("the certificate is not one SEQUENCE")
    tag, _, tbs_end = _tlv_at(cert_der, start, end)
    if tag != 0x30:
        raise CtError("the certificate does not begin with a TBSCertificate")
    return cert_der[start:tbs_end]


_POISON_DER = _der_oid(POISON_OID)
_SCT_LIST_DER = _der_oid(SCT_LIST_OID)
_DROPPED = frozenset({_POISON_DER, _SCT_LIST_DER})
# The two extnIDs as DER, as TbsParts gives them (Extension by Extension)
POISON_OID_DER = _POISON_DER
SCT_LIST_OID_DER = _SCT_LIST_DER


@dataclass(frozen=True)
class TbsParts:
    """A TBSCertificate's DER cut once: its fields before and after `[3] extensions`
    (each as it was encoded), the SEQUENCE tag of the extensions, and each extension as
    (extnID's DER, the whole Extension's DER)."""

    before: tuple[bytes, ...]
    after: tuple[bytes, ...]
    extensions: tuple[tuple[bytes, bytes], ...]
    has_extensions: bool
    der: bytes = b""  # the TBSCertificate as parsed

    @classmethod
    def parse(cls, tbs_der: bytes) -> TbsParts:
        tag, pos, end = _tlv_at(tbs_der, 0, len(tbs_der))
        if tag != 0x30 or end != len(tbs_der):
            raise CtError("the TBSCertificate is not one SEQUENCE")
        before: list[bytes] = []
        after: list[bytes] = []
        exts: list[tuple[bytes, bytes]] = []
        found = False
        while pos < end:
            ftag, value, field_end = _tlv_at(tbs_der, pos, end)
            if ftag != 0xA3:  # [3] EXPLICIT Extensions
                (after if found else before).append(tbs_der[pos:field_end])
                pos = field_end
                continue
            if found:
                raise CtError("the TBSCertificate has two extensions fields")
            found = True
            stag, ext, list_end = _tlv_at(tbs_der, value, field_end)
            if stag != 0x30 or list_end != field_end:
                raise CtError("the extensions are not one SEQUENCE")
            while ext < list_end:
                _, inner, ext_end = _tlv_at(tbs_der, ext, list_end)
                _, _, oid_end = _tlv_at(tbs_der, inner, ext_end)  # extnID, first
                exts.append((tbs_der[inner:oid_end], tbs_der[ext:ext_end]))
                ext = ext_end
            pos = field_end
        return cls(tuple(before), tuple(after), tuple(exts), found, tbs_der)

    @property
    def issuer(self) -> bytes:
        """The issuer Name's DER (RFC 5280 §4.1: after the optional [0] version, the
        serial number and the signature algorithm)."""
        return self._field(2)

    @property
    def subject(self) -> bytes:
        """The subject Name's DER (after the issuer and the validity)."""
        return self._field(4)

    def _field(self, n: int) -> bytes:
        fields = self.before
        if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
            n += 1
        if n >= len(fields):
            raise CtError("the TBSCertificate is missing fields")
        return fields[n]

    def oids(self) -> list[bytes]:
        return [oid for oid, _ in self.extensions]

    def encode(self, extensions: Sequence[bytes]) -> bytes:
        """The TBS with these Extension DERs (no extensions field if there are none)."""
        fields = list(self.before)
        if extensions:
            fields.append(_tlv(0xA3, _tlv(0x30, b"".join(extensions))))
        return _tlv(0x30, b"".join([*fields, *self.after]))

    def stripped(self) -> bytes:
        """The TBS without the poison and SCT list extensions (§3.2)."""
        return self.encode([ext for oid, ext in self.extensions if oid not in _DROPPED])


@functools.lru_cache(maxsize=8)
def parse_tbs(tbs_der: bytes) -> TbsParts:
    """`TbsParts.parse`, remembered for the last few TBSs (a pure function of the bytes,
    and TbsParts is immutable): the CA cuts one precertificate's TBS for its log entry,
    for its final certificate, for the final certificate's lint and for the
    correspondence check, each a parse of the same bytes."""
    return TbsParts.parse(tbs_der)


def strip_extensions(tbs_der: bytes) -> bytes:
    """`tbs_der` without the poison and SCT list extensions (and without the
    extensions field altogether if nothing else is left in it)."""
    return parse_tbs(tbs_der).stripped()


def sct_list_extension_der(scts: Sequence[SignedCertificateTimestamp]) -> bytes:
    """The DER `Extension` of the embedded SCT list (§3.3), not critical: extnID, then
    extnValue, an OCTET STRING around the DER of `SignedCertificateTimestampList`, itself
    an OCTET STRING (the same bytes as `x509.UnrecognizedExtension` with
    ctpolicy.sct_list_extension encodes)."""
    inner = _tlv(0x04, encode_sct_list(scts))
    return _tlv(0x30, _SCT_LIST_DER + _tlv(0x04, inner))


def final_tbs(precert_tbs: bytes, scts: Sequence[SignedCertificateTimestamp]) -> bytes:
    """§3.3: the final certificate's TBSCertificate, cut from the precertificate's DER
    as signed: every field and extension byte for byte and in order, the poison left
    out, the SCT list extension added last. CtError unless `precert_tbs` has the poison
    and no SCT list."""
    parts = parse_tbs(precert_tbs)
    oids = parts.oids()
    if oids.count(_POISON_DER) != 1 or _SCT_LIST_DER in oids:
        raise CtError("not a precertificate's TBS (one poison, no SCT list)")
    kept = [ext for oid, ext in parts.extensions if oid != _POISON_DER]
    return parts.encode([*kept, sct_list_extension_der(scts)])


def tbs_corresponds(precert_tbs: bytes, final_tbs_: bytes) -> bool:
    """§3.1/§3.3 on the DER alone, each TBS cut once: the first carries the poison (and no
    SCT list), the second the SCT list (and no poison), and they are the same once both
    are removed."""
    try:
        pre, fin = parse_tbs(precert_tbs), parse_tbs(final_tbs_)
    except CtError:
        return False
    pre_oids, fin_oids = pre.oids(), fin.oids()
    return (
        pre_oids.count(_POISON_DER) == 1
        and _SCT_LIST_DER not in pre_oids
        and fin_oids.count(_SCT_LIST_DER) == 1
        and _POISON_DER not in fin_oids
        and pre.stripped() == fin.stripped()
    )


@dataclass(frozen=True)
class TimestampedEntry:
    timestamp: int  # milliseconds since the epoch
    entry: SignedEntry
    extensions: bytes = b""

    def encode(self) -> bytes:
        return self.timestamp.to_bytes(8, "big") + self.entry.encode() + opaque(self.extensions, 2)


def merkle_tree_leaf(entry: TimestampedEntry) -> bytes:
    """§3.4 MerkleTreeLeaf: version, leaf type, TimestampedEntry (the `leaf_input`)."""
    return bytes([Version.V1, MerkleLeafType.TIMESTAMPED_ENTRY]) + entry.encode()


def signed_leaf(timestamp: int, signed_entry: bytes, extensions: bytes) -> bytes:
    """For a v1 SCT, the bytes its signature covers (§3.2) and the MerkleTreeLeaf of
    its entry (§3.4) are the same: version v1 (0), then signature_type
    certificate_timestamp (0) for the one and leaf_type timestamped_entry (0) for the
    other, then timestamp, entry and extensions alike. Built once for both, from
    `signed_entry` as `SignedEntry.encode` gives it."""
    return (
        b"\x00\x00"
        + timestamp.to_bytes(8, "big")
        + signed_entry
        + len(extensions).to_bytes(2, "big")
        + extensions
    )


def parse_merkle_tree_leaf(data: bytes) -> TimestampedEntry:
    r = Reader(data)
    if r.uint(1) != Version.V1 or r.uint(1) != MerkleLeafType.TIMESTAMPED_ENTRY:
        raise CtError("not a v1 timestamped_entry leaf")
    timestamp = r.uint(8)
    kind = r.uint(2)
    if kind == LogEntryType.X509_ENTRY:
        entry = SignedEntry.x509(r.opaque(3))
    elif kind == LogEntryType.PRECERT_ENTRY:
        key_hash = r.take(32)
        entry = SignedEntry.precert(PrecertEntry(key_hash, r.opaque(3)))
    else:
        raise CtError(f"unknown entry type {kind}")
    extensions = r.opaque(2)
    r.end()
    return TimestampedEntry(timestamp, entry, extensions)


def leaf_extensions(data: bytes) -> bytes:
    """The `extensions` of a MerkleTreeLeaf (§3.4), found by the lengths alone: what
    `parse_merkle_tree_leaf(data).extensions` is, without copying out the entry."""
    if len(data) < 12 or data[0] != Version.V1 or data[1] != MerkleLeafType.TIMESTAMPED_ENTRY:
        raise CtError("not a v1 timestamped_entry leaf")
    kind = int.from_bytes(data[10:12], "big")
    if kind == LogEntryType.X509_ENTRY:
        pos = 12
    elif kind == LogEntryType.PRECERT_ENTRY:
        pos = 44  # after the issuer key hash
    else:
        raise CtError(f"unknown entry type {kind}")
    pos += 3 + int.from_bytes(data[pos : pos + 3], "big")
    end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
    if pos + 2 > len(data) or end != len(data):
        raise CtError("not a v1 timestamped_entry leaf")
    return data[pos + 2 : end]


def x509_chain_extra_data(chain: Sequence[bytes]) -> bytes:
    """extra_data of an X.509 entry: `ASN.1Cert certificate_chain<0..2^24-1>` (§4.6)."""
    return opaque(b"".join(opaque(c, 3) for c in chain), 3)


def precert_chain_extra_data(precert: bytes, chain: Sequence[bytes]) -> bytes:
    """extra_data of a precert entry: `PrecertChainEntry` (§4.6)."""
    return opaque(precert, 3) + x509_chain_extra_data(chain)


# ----- signatures -----


@dataclass(frozen=True)
class DigitallySigned:
    signature: bytes
    hash_algorithm: int = HashAlgorithm.SHA256
    signature_algorithm: int = SignatureAlgorithm.ECDSA

    def encode(self) -> bytes:
        return bytes([self.hash_algorithm, self.signature_algorithm]) + opaque(self.signature, 2)

    @classmethod
    def decode(cls, data: bytes) -> DigitallySigned:
        r = Reader(data)
        out = cls.read(r)
        r.end()
        return out

    @classmethod
    def read(cls, r: Reader) -> DigitallySigned:
        hash_alg, sig_alg = r.uint(1), r.uint(1)
        return cls(r.opaque(2), hash_alg, sig_alg)


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())  # immutable: made once, not per signature


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> DigitallySigned:
    return DigitallySigned(key.sign(data, _ECDSA_SHA256))


def verify(key: ec.EllipticCurvePublicKey, data: bytes, signed: DigitallySigned) -> bool:
    if (signed.hash_algorithm, signed.signature_algorithm) != (
        HashAlgorithm.SHA256,
        SignatureAlgorithm.ECDSA,
    ):
        return False
    try:
        key.verify(signed.signature, data, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def log_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """§3.2: the SHA-256 of the log key's SubjectPublicKeyInfo DER."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


# ----- SCT (§3.2) -----


@dataclass(frozen=True)
class SignedCertificateTimestamp:
    log_id: bytes
    timestamp: int  # ms
    signature: DigitallySigned
    extensions: bytes = b""
    version: int = Version.V1

    def encode(self) -> bytes:
        return (
            bytes([self.version])
            + self.log_id
            + self.timestamp.to_bytes(8, "big")
            + opaque(self.extensions, 2)
            + self.signature.encode()
        )

    @classmethod
    def decode(cls, data: bytes) -> SignedCertificateTimestamp:
        r = Reader(data)
        version = r.uint(1)
        if version != Version.V1:
            raise CtError(f"SCT version {version} is not v1")
        out = cls(r.take(32), r.uint(8), extensions=r.opaque(2), signature=DigitallySigned.read(r))
        r.end()
        return out

    def to_json(self) -> dict[str, Any]:
        """The add-chain response (§4.1)."""
        return {
            "sct_version": self.version,
            "id": b64(self.log_id),
            "timestamp": self.timestamp,
            "extensions": b64(self.extensions),
            "signature": b64(self.signature.encode()),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SignedCertificateTimestamp:
        try:
            version = doc["sct_version"]
            if version != Version.V1:
                raise CtError(f"SCT version {version} is not v1")
            return cls(
                log_id=unb64(doc["id"]),
                timestamp=json_uint64(doc["timestamp"], "timestamp"),
                extensions=unb64(doc.get("extensions", "")),
                signature=DigitallySigned.decode(unb64(doc["signature"])),
            )
        except (KeyError, TypeError) as exc:
            raise CtError(f"not an SCT: {exc}") from None


def sct_signature_input(
    timestamp: int, entry: SignedEntry, extensions: bytes = b"", version: int = Version.V1
) -> bytes:
    """§3.2: the `digitally-signed struct` an SCT's signature covers."""
    return (
        bytes([version, SignatureType.CERTIFICATE_TIMESTAMP])
        + timestamp.to_bytes(8, "big")
        + entry.encode()
        + opaque(extensions, 2)
    )


def sign_sct(
    key: ec.EllipticCurvePrivateKey,
    timestamp: int,
    entry: SignedEntry,
    extensions: bytes = b"",
    log_id_: bytes | None = None,
) -> SignedCertificateTimestamp:
    """`log_id_` saves hashing the public key again for a caller that knows it."""
    signed = sign(key, sct_signature_input(timestamp, entry, extensions))
    lid = log_id_ if log_id_ is not None else log_id(key.public_key())
    return SignedCertificateTimestamp(lid, timestamp, signed, extensions=extensions)


# ----- C2SP static-ct-api: the `leaf_index` SCT extension -----

EXT_LEAF_INDEX = 0  # ExtensionType leaf_index(0)
MAX_LEAF_INDEX = (1 << 40) - 1  # uint40


def leaf_index_extension(index: int) -> bytes:
    """`CtExtensions` holding only `leaf_index`: type 0, then `extension_data<0..2^16-1>`
    around a big-endian uint40 (static-ct-api, "SCT Extension"; 8 bytes in all)."""
    if not 0 <= index <= MAX_LEAF_INDEX:
        raise CtError(f"leaf index {index} does not fit in 40 bits")
    return bytes([EXT_LEAF_INDEX]) + opaque(index.to_bytes(5, "big"), 2)


def parse_ct_extensions(data: bytes) -> dict[int, bytes]:
    """`CtExtensions` as static-ct-api defines it: a list of (uint8 type, opaque data<2>),
    no type twice."""
    r = Reader(data)
    found: dict[int, bytes] = {}
    while r.pos < len(r.data):
        kind = r.uint(1)
        if kind in found:
            raise CtError(f"extension type {kind} appears twice")
        found[kind] = r.opaque(2)
    return found


def leaf_index_of(extensions: bytes) -> int | None:
    """The `leaf_index` an SCT (or TimestampedEntry) carries, or None without one."""
    value = parse_ct_extensions(extensions).get(EXT_LEAF_INDEX)
    if value is None:
        return None
    if len(value) != 5:
        raise CtError(f"leaf_index is {len(value)} bytes, not 5")
    return int.from_bytes(value, "big")


def verify_sct(
    sct: SignedCertificateTimestamp,
    entry: SignedEntry,
    key: ec.EllipticCurvePublicKey,
    key_log_id: bytes | None = None,
) -> bool:
    """Whether `sct` is `key`'s signature over `entry` (and names `key`'s log);
    `key_log_id` saves hashing the key for a caller that knows its log ID."""
    if sct.log_id != (key_log_id if key_log_id is not None else log_id(key)):
        return False
    data = sct_signature_input(sct.timestamp, entry, sct.extensions, sct.version)
    return verify(key, data, sct.signature)


def encode_sct_list(scts: Sequence[SignedCertificateTimestamp]) -> bytes:
    """§3.3 `SignedCertificateTimestampList`, the value of the embedded-SCT extension
    (inside an OCTET STRING, which the x509 library adds)."""
    return opaque(b"".join(opaque(s.encode(), 2) for s in scts), 2)


def decode_sct_list(data: bytes) -> list[SignedCertificateTimestamp]:
    outer = Reader(data)
    inner = Reader(outer.opaque(2))
    outer.end()
    scts = []
    while inner.pos < len(inner.data):
        scts.append(SignedCertificateTimestamp.decode(inner.opaque(2)))
    return scts


# ----- STH (§3.5) -----


@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    timestamp: int  # ms
    root_hash: bytes


def sth_signature_input(head: TreeHead, version: int = Version.V1) -> bytes:
    """§3.5 TreeHeadSignature: what an STH's signature covers."""
    return (
        bytes([version, SignatureType.TREE_HASH])
        + head.timestamp.to_bytes(8, "big")
        + head.tree_size.to_bytes(8, "big")
        + head.root_hash
    )


@dataclass(frozen=True)
class SignedTreeHead:
    head: TreeHead
    signature: DigitallySigned

    def to_json(self) -> dict[str, Any]:
        """The get-sth response (§4.3)."""
        return {
            "tree_size": self.head.tree_size,
            "timestamp": self.head.timestamp,
            "sha256_root_hash": b64(self.head.root_hash),
            "tree_head_signature": b64(self.signature.encode()),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SignedTreeHead:
        try:
            head = TreeHead(
                json_uint64(doc["tree_size"], "tree_size"),
                json_uint64(doc["timestamp"], "timestamp"),
                unb64(doc["sha256_root_hash"]),
            )
            return cls(head, DigitallySigned.decode(unb64(doc["tree_head_signature"])))
        except (KeyError, TypeError) as exc:
            raise CtError(f"not an STH: {exc}") from None

    def verify(self, key: ec.EllipticCurvePublicKey) -> bool:
        return verify(key, sth_signature_input(self.head), self.signature)


def sign_tree_head(key: ec.EllipticCurvePrivateKey, head: TreeHead) -> SignedTreeHead:
    return SignedTreeHead(head, sign(key, sth_signature_input(head)))


# ----- base64 -----


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def json_uint64(value: object, what: str) -> int:
    """A JSON number that is a uint64 (RFC 6962 §4.1, §4.3: the SCT's and the STH's
    fields): int() also took a string of any script's digits ("\u0661" is 1), a float
    and true, and a negative number raised OverflowError when the SCT was verified."""
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise CtError(f"{what} {str(value)[:40]!r} is not a uint64 JSON number")
    return value


def unb64(text: object) -> bytes:
    """Standard base64 with padding (as RFC 6962's JSON uses); anything else is CtError."""
    if not isinstance(text, str):
        raise CtError("expected a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise CtError(f"bad base64: {text[:40]!r}") from None


# ----- Chrome's log list v3 -----


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, AttributeError):
        raise CtError(f"bad time {text!r}") from None


@dataclass(frozen=True)
class LogInfo:
    """One log of a log list: what a CA submits to and a verifier checks against."""

    description: str
    key: ec.EllipticCurvePublicKey
    url: str
    mmd: int = 86400
    operator: str = ""
    temporal_start: datetime | None = None  # inclusive, of the certificates' notAfter
    temporal_end: datetime | None = None  # exclusive
    usable_since: datetime | None = None

    @functools.cached_property
    def log_id(self) -> bytes:
        """Hashed once per LogInfo: the CA's policy check asks for it per SCT."""
        return log_id(self.key)

    def to_json(self) -> dict[str, Any]:
        der = self.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        doc: dict[str, Any] = {
            "description": self.description,
            "log_id": b64(self.log_id),
            "key": b64(der),
            "url": self.url,
            "mmd": self.mmd,
        }
        if self.usable_since is not None:
            doc["state"] = {"usable": {"timestamp": _rfc3339(self.usable_since)}}
        if self.temporal_start is not None and self.temporal_end is not None:
            doc["temporal_interval"] = {
                "start_inclusive": _rfc3339(self.temporal_start),
                "end_exclusive": _rfc3339(self.temporal_end),
            }
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], operator: str = "") -> LogInfo:
        try:
            key = serialization.load_der_public_key(unb64(doc["key"]))
        except (KeyError, ValueError) as exc:
            raise CtError(f"log {doc.get('description', '?')!r}: bad key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise CtError("only ECDSA log keys are supported")
        info = cls(
            description=str(doc.get("description", "")),
            key=key,
            url=str(doc.get("url", "")),
            mmd=_mmd(doc),
            operator=operator,
        )
        if "log_id" in doc and unb64(doc["log_id"]) != info.log_id:
            raise CtError(f"log {info.description!r}: log_id does not match its key")
        interval = doc.get("temporal_interval")
        if isinstance(interval, Mapping):
            info = _with(
                info,
                temporal_start=_parse_time(interval["start_inclusive"]),
                temporal_end=_parse_time(interval["end_exclusive"]),
            )
        usable = (doc.get("state") or {}).get("usable")
        if isinstance(usable, Mapping) and "timestamp" in usable:
            info = _with(info, usable_since=_parse_time(usable["timestamp"]))
        return info


def _mmd(doc: Mapping[str, Any]) -> int:
    """The log's maximum merge delay, in seconds: a JSON integer, as Chrome's v3 schema
    has it. int() also took a string of any script's digits ("\u0663" is 3), "1_000",
    surrounding spaces, a float (cut down) and true."""
    value = doc.get("mmd", 86400)
    try:
        return json_uint64(value, "mmd")
    except CtError as exc:
        raise CtError(f"log {str(doc.get('description', '?'))[:80]!r}: {exc}") from None


def _with(info: LogInfo, **changes: Any) -> LogInfo:
    return replace(info, **changes)


@dataclass(frozen=True)
class LogList:
    """Chrome's log list v3: operators, each with an email list and its logs."""

    logs: tuple[LogInfo, ...]
    timestamp: datetime | None = None
    version: str = "1"
    emails: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def by_id(self, log_id_: bytes) -> LogInfo | None:
        return next((log for log in self.logs if log.log_id == log_id_), None)

    def to_json(self) -> dict[str, Any]:
        operators: dict[str, list[LogInfo]] = {}
        for log in self.logs:
            operators.setdefault(log.operator, []).append(log)
        doc: dict[str, Any] = {"version": self.version}
        if self.timestamp is not None:
            doc["log_list_timestamp"] = _rfc3339(self.timestamp)
        doc["operators"] = [
            {
                "name": name,
                "email": list(self.emails.get(name, ())),
                "logs": [log.to_json() for log in logs],
                "tiled_logs": [],
            }
            for name, logs in operators.items()
        ]
        return doc

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, doc: Any) -> LogList:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("operators"), list):
            raise CtError("not a v3 log list: no operators")
        logs: list[LogInfo] = []
        emails: dict[str, tuple[str, ...]] = {}
        for op in doc["operators"]:
            name = str(op.get("name", ""))
            emails[name] = tuple(op.get("email", ()))
            logs.extend(LogInfo.from_json(log, name) for log in op.get("logs", ()))
        stamp = doc.get("log_list_timestamp")
        return cls(
            tuple(logs),
            _parse_time(stamp) if isinstance(stamp, str) else None,
            str(doc.get("version", "")),
            emails,
        )

    @classmethod
    def loads(cls, text: str | bytes) -> LogList:
        try:
            return cls.from_json(json.loads(text))
        except json.JSONDecodeError as exc:
            raise CtError(f"log list is not JSON: {exc}") from None

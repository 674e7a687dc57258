"""The mutual-TLS credentials between the CA and its remote perspectives.

Both are issued by the CA's own intermediate, so they chain to `root.pem`, and each
carries a URI subjectAltName that no subscriber certificate can: the CA never copies a
CSR's extensions and puts only dns and ip identifiers in a subscriber's SAN
(`ca.issue_certificate`). Chaining to the root is therefore not enough for either side;
each also checks the other's URI:

- the CA's client certificate (`mpic-client.pem` / `.key` in the CA's state directory):
  extendedKeyUsage clientAuth, URI `CLIENT_URI`. A perspective answers only a peer that
  presents it.
- a perspective's server certificate (`server.pem` / `.key` in the perspective's state
  directory, beside `ca.pem`, the CA's root): serverAuth, the perspective's host names
  and addresses, and URI `PERSPECTIVE_URI_PREFIX + NAME`. The CA counts an answer only
  from a peer that presents the URI of the perspective it meant to ask.

`acmekit server perspective-certs` makes them (the CA's client certificate on first use).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from acmekit.files import atomic_write
from acmekit.server.ca import BACKDATE, Issuer, new_serial, pem_chain

CLIENT_URI = "urn:acmekit:mpic:ca"
PERSPECTIVE_URI_PREFIX = "urn:acmekit:mpic:perspective:"
LIFETIME = timedelta(days=365)
CLIENT_STEM = "mpic-client"

_KEY_MODE = 0o600
_CERT_MODE = 0o644


@dataclass(frozen=True)
class PerspectiveFiles:
    """What a perspective serves with and trusts, in its state directory."""

    state_dir: Path

    @property
    def chain(self) -> Path:
        return self.state_dir / "server.pem"

    @property
    def key(self) -> Path:
        return self.state_dir / "server.key"

    @property
    def ca(self) -> Path:
        """The CA's root: what the client certificate must chain to."""
        return self.state_dir / "ca.pem"


def perspective_uri(name: str) -> str:
    return PERSPECTIVE_URI_PREFIX + name


def _names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    import ipaddress

    out: list[x509.GeneralName] = []
    for host in hosts:
        text = host.strip().removeprefix("[").removesuffix("]")
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(text)))
        except ValueError:
            out.append(x509.DNSName(text.lower().rstrip(".")))
    return out


def _issue(
    issuer: Issuer,
    common_name: str,
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    now: datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + LIFETIME, issuer.intermediate_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.intermediate_cert.subject)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(issuer.authority_key_identifier, critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
    )
    cert = builder.sign(issuer.intermediate_key, hashes.SHA256())  # type: ignore[arg-type]
    return cert, key


def _write(
    chain_path: Path,
    key_path: Path,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    issuer: Issuer,
) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(key_path, pem, _KEY_MODE)
    atomic_write(chain_path, pem_chain(cert, issuer).encode("ascii"), _CERT_MODE)


def client_paths(state_dir: Path) -> tuple[Path, Path]:
    return state_dir / f"{CLIENT_STEM}.pem", state_dir / f"{CLIENT_STEM}.key"


def ensure_client_credentials(issuer: Issuer, state_dir: Path, now: datetime) -> tuple[Path, Path]:
    """The CA's client certificate and key in `state_dir`, issued when missing or when
    less than a month is left."""
    chain_path, key_path = client_paths(state_dir)
    if chain_path.exists() and key_path.exists():
        leaf = x509.load_pem_x509_certificates(chain_path.read_bytes())[0]
        if leaf.not_valid_after_utc - now > timedelta(days=30):
            return chain_path, key_path
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(CLIENT_URI)]
    cert, key = _issue(issuer, "acmekit mpic client", names, ExtendedKeyUsageOID.CLIENT_AUTH, now)
    _write(chain_path, key_path, cert, key, issuer)
    return chain_path, key_path


def issue_perspective_credentials(
    issuer: Issuer, root_path: Path, out_dir: Path, name: str, hosts: Sequence[str], now: datetime
) -> PerspectiveFiles:
    """A perspective's server certificate for `hosts`, its key and the CA's root, in
    `out_dir` (created 0700)."""
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = PerspectiveFiles(out_dir)
    names = [*_names(hosts), x509.UniformResourceIdentifier(perspective_uri(name))]
    cert, key = _issue(
        issuer, f"acmekit perspective {name}", names, ExtendedKeyUsageOID.SERVER_AUTH, now
    )
    _write(files.chain, files.key, cert, key, issuer)
    shutil.copyfile(root_path, files.ca)
    return files


def peer_uris(peercert: object) -> set[str]:
    """The URI subjectAltNames of a peer certificate as `SSLSocket.getpeercert()` gives it."""
    if not isinstance(peercert, dict):
        return set()
    return {value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI"}


__all__ = [
    "CLIENT_URI",
    "PerspectiveFiles",
    "client_paths",
    "ensure_client_credentials",
    "issue_perspective_credentials",
    "peer_uris",
    "perspective_uri",
]

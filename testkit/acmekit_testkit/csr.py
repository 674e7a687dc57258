"""Keys and CSRs for tests that ask a CA for certificates."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def make_csr(*names: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A P-256 key and a DER CSR whose SANs are `names` (IP addresses as iPAddress)."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.DER)


def leaf_names(fullchain_pem: str) -> set[str]:
    """The DNS names in the first certificate of a PEM chain."""
    leaf = x509.load_pem_x509_certificates(fullchain_pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))

"""Keys and CSRs for tests that ask a CA for certificates."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol import csr


def make_csr(*names: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A P-256 key and the client's DER CSR for `names` (IP addresses as iPAddress)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, csr.make_csr(key, names)


def leaf_names(fullchain_pem: str) -> set[str]:
    """The DNS names in the first certificate of a PEM chain."""
    leaf = x509.load_pem_x509_certificates(fullchain_pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))

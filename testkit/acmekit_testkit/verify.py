"""Check an issued chain the way a TLS client would: `openssl verify` against the root."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509


def openssl_verify(root: Path, chain_pem: Path, workdir: Path) -> x509.Certificate:
    """Verify the first certificate of `chain_pem` through the rest to `root`."""
    certs = x509.load_pem_x509_certificates(chain_pem.read_bytes())
    leaf, untrusted = workdir / "leaf.pem", workdir / "untrusted.pem"
    leaf.write_bytes(certs[0].public_bytes(_PEM))
    untrusted.write_bytes(b"".join(c.public_bytes(_PEM) for c in certs[1:]))
    result = subprocess.run(
        ["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(root),
         "-untrusted", str(untrusted), str(leaf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result
    return certs[0]


def dns_names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

_PEM = Encoding.PEM

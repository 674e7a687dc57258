"""The walk's shortcuts are pinned by the SHA-256 of pkilint's function sources and are
meant to be off, pkilint's own code running, whenever that code is not the pinned code.
`inspect.getsource` follows `__wrapped__`, so a `functools.wraps` wrapper installed over a
pinned function (instrumentation, a local patch) hashes as the original: the shortcut
stays on and the wrapper never runs, and the findings are no longer plain pkilint's."""

from __future__ import annotations

import json
import subprocess
import sys

# In a fresh interpreter: wrap pkilint's NodeVisitor.match with a functools.wraps wrapper
# (here one that switches off every rule about the keyUsage value), then lint the same
# certificate with plain pkilint and with ours. Both run the same patched pkilint.
SCRIPT = r"""
import functools, json, sys
from datetime import UTC, datetime, timedelta
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pkilint.document import NodeVisitor

original = NodeVisitor.match

@functools.wraps(original)
def match(self, node):
    return "keyUsage" not in node.path and original(self, node)

NodeVisitor.match = match

from pkilint import finding_filter, loader
from pkilint.cabf import serverauth
from pkilint.cabf.serverauth import serverauth_constants
from pkilint.pkix import certificate
from acmekit.server.lint import lint_certificate_der

now = datetime(2026, 12, 1, tzinfo=UTC)
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")])
der = (
    x509.CertificateBuilder()
    .subject_name(name).issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]))
    .public_key(key.public_key()).serial_number(0x1234567890ABCDEF1234)
    .not_valid_before(now).not_valid_after(now + timedelta(days=90))
    # basicConstraints and keyUsage not critical: criticality findings
    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
    .add_extension(
        x509.KeyUsage(True, False, False, False, False, False, False, False, False),
        critical=False,
    )
    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.com")]), critical=False)
    .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
)
kind = serverauth_constants.CertificateType.DV_FINAL_CERTIFICATE
container = certificate.create_pkix_certificate_validator_container(
    serverauth.create_decoding_validators(), serverauth.create_validators(kind)
)
doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
results, _ = finding_filter.filter_results(
    serverauth.create_serverauth_finding_filters(kind), container.validate(doc.root)
)
plain = [[d.finding.code, str(r.node.path)] for r in results for d in r.finding_descriptions]
ours = [[f.code, f.path] for f in lint_certificate_der(der).findings]
json.dump({"plain": plain, "ours": ours}, sys.stdout)
"""


def test_a_wrapped_pinned_match_turns_the_shortcut_off() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    found = json.loads(out)
    assert found["ours"] == found["plain"]

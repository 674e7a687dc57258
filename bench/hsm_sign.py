"""Signing a subscriber certificate: the intermediate's key in a file against the same
kind of key in a PKCS#11 token (SoftHSM2, a token of the run's own), side by side.

    .venv/bin/python bench/hsm_sign.py [--certificates 300] [--key-type ec256|rsa2048]

Prints milliseconds of wall time per certificate for each (`issue_certificate`, CSR to
signed certificate, the token's signature checked before it is returned), and the
ratio. SoftHSM2 runs in this process: a network HSM adds its round trip to each
signature on top of this.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    Issuer,
    create_external_hierarchy,
    issue_certificate,
    load_or_create_issuer,
    new_serial,
)
from acmekit.server.hsm import Pkcs11Key, TokenAddress, generate_key
from acmekit_testkit.softhsm import softhsm_token


def _csr() -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example")])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def _per_certificate(issuer: Issuer, count: int) -> float:
    csr, now = _csr(), datetime.now(UTC)
    idents = [Identifier(IdentifierType.DNS, "bench.example")]
    issue_certificate(issuer, csr, idents, serial=new_serial(), not_before=now, not_after=now)
    start = time.perf_counter()
    for _ in range(count):
        issue_certificate(
            issuer, csr, idents, serial=new_serial(), not_before=now,
            not_after=now + timedelta(days=90),
        )  # fmt: skip
    return (time.perf_counter() - start) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certificates", type=int, default=300)
    parser.add_argument("--key-type", choices=["ec256", "rsa2048"], default="ec256")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hsm = softhsm_token(work / "hsm")
        os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
        where = TokenAddress(hsm.module, hsm.label, "bench")
        public = generate_key(where, hsm.pin, args.key_type)
        state = work / "token-ca"
        root, intermediate, _ = create_external_hierarchy(
            state, state / "root.key", public, datetime.now(UTC)
        )
        token = Pkcs11Key(where, hsm.pin, public)
        token.connect()
        in_token = Issuer(root, None, intermediate, token)
        in_file = load_or_create_issuer(work / "file-ca", datetime.now(UTC))
        if args.key_type == "rsa2048":  # the same algorithm in the file, for a fair pair
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            in_file = Issuer(in_file.root_cert, in_file.root_key, in_file.intermediate_cert, key)
        file_ms = _per_certificate(in_file, args.certificates)
        token_ms = _per_certificate(in_token, args.certificates)
        token.close()
    print(f"key type {args.key_type}, {args.certificates} certificates each")
    print(f"file key:      {file_ms:.3f} ms per certificate")
    print(f"SoftHSM2 token: {token_ms:.3f} ms per certificate ({token_ms / file_ms:.1f}x)")


if __name__ == "__main__":
    main()

"""Lint micro-benchmark: the CPU of linting one to-be-signed certificate before signing
(lint.py's `Linter.check`: the throwaway signature, pkilint, the findings), per
certificate, for a final certificate and for a precertificate (CT on), with the
certificates the CA issues (ca.py's builder: one to twelve names, EC P-256 and RSA 2048
subscriber keys, a new one per certificate). The issuing key's own signature is
reported beside it as the yardstick.

CPU is `time.process_time` around N checks, after a warm-up (the validator trees are
built at start, as `acmekit server` does); the least flattering of R rounds is shown.

Run: `python bench/lint.py [--certs 200] [--rounds 3]`
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    Issuer,
    load_or_create_issuer,
    new_serial,
    precertificate_builder,
    subscriber_builder,
)
from acmekit.server.lint import Linter, digest_for

NOW = datetime.now(UTC)


def builders(issuer: Issuer, count: int) -> list[x509.CertificateBuilder]:
    """`count` subscriber certificates as the CA builds them, names and keys varied."""
    # a new subscriber key for every certificate, as in real issuance: one in ten RSA
    keys = [
        rsa.generate_private_key(65537, 2048).public_key()
        if i % 10 == 9
        else ec.generate_private_key(ec.SECP256R1()).public_key()
        for i in range(count)
    ]
    made = []
    for i in range(count):
        names = [Identifier(IdentifierType.DNS, f"h{i}-{j}.example.com") for j in range(1 + i % 12)]
        made.append(
            subscriber_builder(
                issuer,
                keys[i],
                names,
                serial=new_serial(),
                not_before=NOW,
                not_after=NOW + timedelta(days=90),
                crl_url="http://crl.example.com/crl/0.crl",
                issuer_url="http://crl.example.com/issuer.der",
            )
        )
    return made


Builders = list[x509.CertificateBuilder]


def cpu_ms(run: Callable[[x509.CertificateBuilder], object], items: Builders) -> float:
    """CPU milliseconds of `run` per item."""
    start = time.process_time()
    for item in items:
        run(item)
    return (time.process_time() - start) * 1000 / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the warnings' logging is measured by bench/server.py
    with tempfile.TemporaryDirectory() as tmp:
        issuer = load_or_create_issuer(Path(tmp) / "state", NOW)
    linter = Linter()
    linter.warm(precert=True)
    key = issuer.intermediate_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    finals = builders(issuer, args.certs)
    precerts = [precertificate_builder(b) for b in finals]
    throwaway = linter.keys.like(key)
    for b in finals[:10] + precerts[:10]:
        linter.check(b, throwaway)  # warm-up
    rows: dict[str, list[float]] = {"certificate": [], "precertificate": [], "signature": []}
    for _ in range(args.rounds):
        rows["certificate"].append(cpu_ms(lambda b: linter.check(b, throwaway), finals))
        rows["precertificate"].append(cpu_ms(lambda b: linter.check(b, throwaway), precerts))
        rows["signature"].append(cpu_ms(lambda b: b.sign(key, digest_for(key)), finals))
    for name, figures in rows.items():
        shown = " ".join(f"{f:.2f}" for f in figures)
        print(
            f"{name:15s} CPU ms/cert: worst {max(figures):.2f} "
            f"median {statistics.median(figures):.2f}  (rounds: {shown})"
        )
    print(
        "lint per issuance with CT on (precertificate + certificate): "
        f"{max(rows['certificate']) + max(rows['precertificate']):.2f} ms"
    )


if __name__ == "__main__":
    main()

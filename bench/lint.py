"""Lint micro-benchmark: the CPU of linting one to-be-signed certificate before signing
(lint.py's `Linter.check`: the throwaway signature, pkilint, the findings), per
certificate, for a final certificate and for a precertificate (CT on), with the
certificates the CA issues (ca.py's builder: one to twelve names, EC P-256 and RSA 2048
subscriber keys, a new one per certificate). The issuing key's own signature is
reported beside it as the yardstick.

"CT pair" is what one issuance lints with CT on: the precertificate, then the final
certificate (its SCT list added), from the precertificate's decoded document as the CA
does it (lint.Decoded); "CT pair, final afresh" decodes the final certificate anew, as
before that. Every round lints certificates never linted before.
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

import pyasn1_fasder
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from pkilint.pkix import general_name

from acmekit.protocol.ct import DigitallySigned, SignedCertificateTimestamp, final_tbs
from acmekit.protocol.ctpolicy import sct_list_extension
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    Issuer,
    load_or_create_issuer,
    new_serial,
    precertificate_builder,
    subscriber_builder,
)
from acmekit.server.lint import Linter, build_certificate_validator, lint_certificate_der
from acmekit.server.signing import SigningKey, assemble_signed, file_digest, signed_parts

# pkilint's own functions, before the linter's memos replace them (Linter.warm)
PLAIN_PREDICATE = general_name.validators_predicate
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


SCT_LIST = [
    SignedCertificateTimestamp(bytes([n]) * 32, 1_780_000_000_000, DigitallySigned(b"0" * 70))
    for n in (1, 2)
]
SCTS = sct_list_extension(SCT_LIST)


def ct_pair(
    linter: Linter, builder: x509.CertificateBuilder, throwaway: SigningKey, reuse: bool = True
) -> None:
    """What an issuance with CT on lints (ca.precertificate, ca.final_certificate): the
    precertificate, then the final certificate (RFC 6962 §3.3: its TBS less the poison,
    plus the SCT list), from the precertificate's decoded document (lint.Decoded), or
    decoded afresh (`reuse` False: as before)."""
    copy = precertificate_builder(builder).sign(throwaway, file_digest(throwaway))
    der = copy.public_bytes(Encoding.DER)
    _, decoded = linter.lint_precertificate(der)
    _, algorithm, signature = signed_parts(der)
    final = assemble_signed(final_tbs(copy.tbs_certificate_bytes, SCT_LIST), algorithm, signature)
    linter.lint_final(final, decoded if reuse else None)


def plain_pkilint_ms(issuer: Issuer, throwaway: SigningKey, count: int, rounds: int) -> None:
    """pkilint's own walk (no index, no memos) and ours on the same DER, interleaved in
    small batches, each batch on new certificates: the ratio is what the neighbours'
    load cannot move much."""
    from pkilint import document, finding_filter, loader
    from pkilint.pkix import general_name

    ours = (document.decode_der, general_name.validators_predicate)
    plain = (pyasn1_fasder.decode_der, PLAIN_PREDICATE)
    trees = {p: build_certificate_validator(p) for p in (False, True)}

    def pkilint(der: bytes, precert: bool) -> None:
        container, filters = trees[precert]
        doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
        finding_filter.filter_results(filters, container.validate(doc.root))

    figures: dict[str, list[float]] = {"pkilint": [], "ours": []}
    for _ in range(rounds * 5):
        for name, funcs in (("pkilint", plain), ("ours", ours)):
            ders: list[tuple[bytes, bool]] = []
            for b in builders(issuer, max(count // 5, 2)):
                for pre, made in ((False, b), (True, precertificate_builder(b))):
                    signed = made.sign(throwaway, file_digest(throwaway))
                    ders.append((signed.public_bytes(Encoding.DER), pre))
            document.decode_der, general_name.validators_predicate = funcs
            try:
                start = time.process_time()
                for der, pre in ders:
                    if name == "ours":
                        lint_certificate_der(der, precert=pre)
                    else:
                        pkilint(der, pre)
                figures[name].append((time.process_time() - start) * 1000 / len(ders))
            finally:
                document.decode_der, general_name.validators_predicate = ours
    med = {k: statistics.median(v) for k, v in figures.items()}
    worst = max(a / b for a, b in zip(figures["ours"], figures["pkilint"], strict=True))
    print(
        f"pkilint alone (DER in, findings out), interleaved batches: ours {med['ours']:.2f} "
        f"ms, plain pkilint {med['pkilint']:.2f} ms per document (medians); ratio "
        f"{med['ours'] / med['pkilint']:.2f} (least flattering batch {worst:.2f})"
    )


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
    throwaway = linter.keys.like(key)
    for b in builders(issuer, 10):  # warm-up
        linter.check(b, throwaway)
        linter.check(precertificate_builder(b), throwaway)
    rows: dict[str, list[float]] = {
        "certificate": [],
        "precertificate": [],
        "CT pair": [],
        "CT pair, final afresh": [],
        "signature": [],
    }
    for _ in range(args.rounds):
        # new certificates every round and row: nothing unique is linted twice
        finals = builders(issuer, args.certs)
        rows["certificate"].append(cpu_ms(lambda b: linter.check(b, throwaway), finals))
        precerts = [precertificate_builder(b) for b in builders(issuer, args.certs)]
        rows["precertificate"].append(cpu_ms(lambda b: linter.check(b, throwaway), precerts))
        pairs = builders(issuer, args.certs)
        rows["CT pair"].append(cpu_ms(lambda b: ct_pair(linter, b, throwaway), pairs))
        fresh = builders(issuer, args.certs)
        rows["CT pair, final afresh"].append(
            cpu_ms(lambda b: ct_pair(linter, b, throwaway, reuse=False), fresh)
        )
        rows["signature"].append(cpu_ms(lambda b: b.sign(key, file_digest(key)), finals))
    for name, figures in rows.items():
        shown = " ".join(f"{f:.2f}" for f in figures)
        print(
            f"{name:15s} CPU ms/cert: worst {max(figures):.2f} "
            f"median {statistics.median(figures):.2f}  (rounds: {shown})"
        )
    print(
        "(CT pair: the precertificate, then the final certificate with its SCT list, from the "
        "precertificate's decoded document; 'final afresh': the final certificate decoded anew)"
    )
    plain_pkilint_ms(issuer, throwaway, args.certs, args.rounds)


if __name__ == "__main__":
    main()

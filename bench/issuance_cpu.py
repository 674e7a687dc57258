"""The CA's instructions per certificate in issuance alone, step by step, lint off.

The CA is assembled as `bench/request_path_cpu.py` assembles it (SQLite, lint and rate
limits off), and the authority's issuance steps run N times each, outside any request:
finalize's CSR check (`check_csr` with the CA's key policy), the reservation of a
serial (`Authority._reservation`), the to-be-signed certificate (`Authority._builder`),
its signature (`sign_builder`, the intermediate's file key) and the PEM chain that is
stored for the download (`pem_chain`). Each step's inputs are made beforehand (the
CSRs by distinct P-256 keys), so a step's window holds that step only.

    .venv/bin/python bench/issuance_cpu.py [--certs 50]      CPU seconds per step
    .venv/bin/python bench/issuance_cpu.py --callgrind 50    instructions per step

N is at most 64: the CA keeps the public keys of its last 64 CSRs (`csr_public_key`),
so that the certificate's making finds the key finalize's check parsed; in the CA the
two follow each other, here all the checks come first.

`--callgrind N` runs this script under `valgrind --tool=callgrind --instr-atstart=no`;
the script switches instrumentation on around each step's N runs (callgrind's client
requests through a small C helper, as in request_path_cpu.py) and dumps each window
under the step's name: instructions / N per step, a count the machine's load does not
move. `--same N` prints a digest of the TBSCertificates of N certificates for fixed
keys, serials and times, by the hierarchy kept in `--state DIR` (made on the first
run): what a change that keeps every certificate byte keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

import acmekit.server.authority as authority_module
from _common import fresh_database
from acmekit.protocol.csr import check_csr, make_csr
from acmekit.protocol.jose import PrivateKey
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.authority import Authority
from acmekit.server.ca import pem_chain, sign_builder
from acmekit.server.config import LintSettings, RateLimits, ServerConfig
from acmekit.server.records import OrderRecord
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import new_key
from acmekit_testkit.csr import make_csr as new_csr

STEPS = ("check_csr", "reservation", "builder", "sign", "pem_chain")

TOGGLES = r"""
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void stop(const char *label) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT(label); }
"""

Marks = tuple[Callable[[], None], Callable[[str], None]]


def toggles() -> Marks:
    """Callgrind's start and stop-and-dump (no-ops outside valgrind)."""
    tmp = Path(tempfile.mkdtemp(prefix="acmekit-cg-issuance-"))
    (tmp / "t.c").write_text(TOGGLES)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", tmp / "t.so", tmp / "t.c"], check=True)
    lib = ctypes.CDLL(str(tmp / "t.so"))
    lib.stop.argtypes = [ctypes.c_char_p]
    return lib.start, lambda label: lib.stop(label.encode())


@contextmanager
def authority(state_dir: Path | None = None) -> Iterator[Authority]:
    """The assembled CA's authority; its hierarchy kept in `state_dir` if given."""
    with tempfile.TemporaryDirectory(prefix="acmekit-issuance-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with fresh_database("sqlite", tmp, "ca.db") as url:
            config = ServerConfig(
                state_dir=state_dir or tmp / "ca",
                db=url,
                rate_limits=RateLimits(enabled=False),
                lint=LintSettings(enabled=False),
            )
            assembly = assemble(config)
            gc.collect()
            gc.freeze()
            try:
                yield assembly.app.authority
            finally:
                asyncio.run(assembly.app.close())
                assembly.store.engine.dispose()


def _run(coro: Any) -> Any:
    """A coroutine that never suspends (`_sign` without an issuance delay), run to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


class Inputs:
    """Per certificate: a CSR by its own key, an order for its one name."""

    def __init__(self, n: int, now: datetime, *, fixed: bool = False) -> None:
        self.account_key: PrivateKey = new_key()
        self.names = [f"c{i}.example.test" for i in range(n)]
        if fixed:  # keys from fixed scalars: the same certificates' keys every run
            keys = [ec.derive_private_key(1000 + i, ec.SECP256R1()) for i in range(n)]
            self.csrs = [make_csr(k, [name]) for k, name in zip(keys, self.names, strict=True)]
        else:
            self.csrs = [new_csr(name)[1] for name in self.names]
        self.orders = [
            OrderRecord(
                id=f"order{i}",
                account_id="account",
                identifiers=(Identifier(IdentifierType.DNS, name),),
                authz_ids=(),
                expires=now,
                created=now,
            )
            for i, name in enumerate(self.names)
        ]


def steps(ca: Authority, inputs: Inputs, now: datetime, mark: Callable[[str], Any]) -> list[bytes]:
    """Each step over every certificate in turn, `mark(step)` around each; the DER made."""
    account = inputs.account_key.public_key()
    check = ca.policy.check_certificate_key
    profile = ca._profile_of_order(inputs.orders[0])
    with mark("check_csr"):
        csrs = [
            check_csr(der, order.identifiers, account, check)
            for der, order in zip(inputs.csrs, inputs.orders, strict=True)
        ]
    with mark("reservation"):
        recs = [ca._reservation(order, profile, now) for order in inputs.orders]
    with mark("builder"):
        builders = [
            ca._builder(
                csr,
                order.identifiers,
                int(rec.serial, 16),
                rec.not_before,
                rec.not_after,
                profile,
            )
            for csr, order, rec in zip(csrs, inputs.orders, recs, strict=True)
        ]
    with mark("sign"):
        certs = [sign_builder(builder, ca.issuer, ca.linter) for builder in builders]
    with mark("pem_chain"):
        pems = [pem_chain(cert, ca.issuer) for cert in certs]
    assert len(pems) == len(certs)
    return [cert.public_bytes(Encoding.DER) for cert in certs]


@contextmanager
def _nothing(_: str) -> Iterator[None]:
    yield


def measured(certs: int, marks: Marks | None) -> dict[str, float]:
    now = datetime.now(UTC)
    seconds: dict[str, float] = {}

    @contextmanager
    def mark(step: str) -> Iterator[None]:
        if marks is not None:
            marks[0]()
        start = time.process_time()
        yield
        seconds[step] = (time.process_time() - start) / certs
        if marks is not None:
            marks[1](step)

    with authority() as ca:
        steps(ca, Inputs(4, now), now, _nothing)  # warm: caches, first-use imports
        steps(ca, Inputs(certs, now), now, mark)
    return seconds


def same(certs: int, state_dir: Path) -> str:
    """A digest of the TBSCertificates made for N fixed CSR keys with the serials and
    times pinned (the signatures are ECDSA's, random): equal before and after a change
    when the change keeps every certificate byte."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    serials = iter(range(1 << 126, (1 << 126) + certs + 1))
    authority_module.new_serial = lambda: next(serials)  # type: ignore[attr-defined]
    with authority(state_dir) as ca:
        inputs = Inputs(certs, now, fixed=True)
        ders = steps(ca, inputs, now, _nothing)
    tbs = [x509.load_der_x509_certificate(der).tbs_certificate_bytes for der in ders]
    return hashlib.sha256(b"".join(tbs)).hexdigest()


def report_callgrind(certs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="acmekit-issuance-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        argv += [f"--callgrind-out-file={out}", sys.executable, __file__]
        subprocess.run(
            [*argv, "--certs", str(certs), "--toggles"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        per_step: dict[str, int] = {}
        for part in Path(tmp).glob("callgrind.out*"):
            text = part.read_text()
            head = text.split("\nevents:", 1)[0]
            found = re.search(r"^desc: Trigger: Client Request: (\S+)", head, re.M)
            if found is None or found[1] not in STEPS:
                continue
            totals = re.findall(r"^totals: (\d+)", text, re.M)
            per_step[found[1]] = round(int(totals[-1]) / certs)
    per_step = {step: per_step[step] for step in STEPS}
    print(json.dumps({"certs": certs, **per_step, "total": sum(per_step.values())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=50)
    parser.add_argument("--callgrind", type=int, help="N: instructions per step")
    parser.add_argument("--same", type=int, help="N: digest of the DER of N certificates")
    parser.add_argument("--state", type=Path, help="with --same: the hierarchy's directory")
    parser.add_argument("--toggles", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind:
        report_callgrind(args.callgrind)
    elif args.same:
        if args.state is None:
            parser.error("--same needs --state DIR")
        print(same(args.same, args.state))
    else:
        marks = toggles() if args.toggles else None
        print(json.dumps({"certs": args.certs, **measured(args.certs, marks)}))


if __name__ == "__main__":
    main()

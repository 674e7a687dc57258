"""The CRL lint process (lint.CrlLintProcess): pkilint's CRL lint, one CRL at a time.

Run as `python -m acmekit.server.crl_lint_worker` by the CA, which talks to it over its
standard input and output:

- in: a CRL as its length in decimal, a newline, then that many bytes of DER;
- out: one line of JSON per CRL, the list of its findings, each
  `[severity, code, path, message]` (every finding: the CA drops those it ignores).

It ends when its input does (SIGINT is ignored). Anything else it prints (a library's
warning) goes to standard error, so the answers' stream carries answers only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import BinaryIO

from acmekit.server.lint import LINT_FAILED, Severity, _crl_validator, lint_crl_der

NICENESS = 10  # added to this process's nice value (the CA's)


def serve(given: BinaryIO, answers: BinaryIO) -> None:
    """Lint each CRL read from `given`, one answer line each to `answers`."""
    while True:
        header = given.readline()
        if not header:
            return
        der = given.read(int(header))
        answers.write(json.dumps(_found(der)).encode() + b"\n")
        answers.flush()


def _found(der: bytes) -> list[list[str | None]]:
    """`der`'s findings; a CRL pkilint cannot read (it raised) is one error finding, so
    the process goes on: ended, it would be started again only to fail the same way."""
    try:
        report = lint_crl_der(der)
    except Exception as exc:  # pkilint's decoding or a validator, on this CRL alone
        return [[Severity.ERROR.value, LINT_FAILED, "crl", f"pkilint failed: {_said(exc)}"]]
    return [[f.severity.value, f.code, f.path, f.message] for f in report.findings]


def _said(exc: Exception) -> str:
    """What `exc` says; its name where that raises too (pkilint's document's repr can)."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__


def main() -> None:
    # A Ctrl-C at the CA's terminal reaches its whole process group: the CA ends, and
    # this process with its input, not with a traceback of its own mid-lint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Below the CA in the scheduler's eyes: where the cores are few, the lint's CPU would
    # otherwise slow the event loop it was moved away from. A CRL has hours to be
    # published (Baseline Requirements §4.9.7), a request has not.
    os.nice(NICENESS)
    given, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    _crl_validator()  # built before the first CRL arrives
    serve(given, answers)


if __name__ == "__main__":
    main()

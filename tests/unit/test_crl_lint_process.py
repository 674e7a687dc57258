"""A CRL is linted in a process of its own (lint.CrlLintProcess), so a big CRL's lint
does not hold the CA's GIL, and with it the event loop, while it runs."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from acmekit.server import lint
from acmekit.server.ca import Issuer, load_or_create_issuer
from acmekit.server.crl import build_crl
from acmekit.server.lint import CrlLintProcess, Linter, Severity
from acmekit.server.records import RevokedEntry

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
URL = "http://crl.example.com/crl/0.crl"
# The CA/Browser Forum's longest CRL validity for subscriber certificates is 10 days.
VALIDITY_CODE = "cabf.crl_invalid_validity_period"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return load_or_create_issuer(tmp_path_factory.mktemp("crl-lint") / "state", NOW)


@pytest.fixture
def process() -> Iterator[CrlLintProcess]:
    process = CrlLintProcess()
    yield process
    process.close()


@pytest.fixture
def in_process_lints(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The CRLs linted in this process by `lint_crl_der` (none, with the lint elsewhere)."""
    seen: list[bytes] = []
    plain = lint.lint_crl_der

    def counted(der: bytes, ignored: Any = ()) -> lint.Report:
        seen.append(der)
        return plain(der, ignored)

    monkeypatch.setattr(lint, "lint_crl_der", counted)
    return seen


def _crl(issuer: Issuer, entries: int, validity: timedelta) -> bytes:
    revoked = [RevokedEntry(format(0x1000 + n, "x"), NOW, 4) for n in range(entries)]
    return build_crl(
        issuer, revoked, number=1, url=URL, this_update=NOW, next_update=NOW + validity
    )


def test_a_crl_is_linted_in_another_process_with_its_findings_returned(
    issuer: Issuer, process: CrlLintProcess, in_process_lints: list[bytes]
) -> None:
    linter = Linter(crl_process=process)
    report = linter.crl(_crl(issuer, 50, timedelta(days=30)))
    assert [(f.code, f.severity) for f in report.findings] == [(VALIDITY_CODE, Severity.ERROR)]
    assert linter.crl(_crl(issuer, 50, timedelta(days=1))).findings == ()
    assert in_process_lints == []
    assert process.started == 1
    assert process.pid is not None and process.pid != os.getpid()


def test_ignored_codes_are_dropped_from_the_other_process_findings(
    issuer: Issuer, process: CrlLintProcess
) -> None:
    linter = Linter(crl_process=process, ignored=frozenset({VALIDITY_CODE}))
    assert linter.crl(_crl(issuer, 3, timedelta(days=30))).findings == ()


def test_a_lint_process_that_ended_is_started_again(
    issuer: Issuer, process: CrlLintProcess
) -> None:
    linter = Linter(crl_process=process)
    der = _crl(issuer, 3, timedelta(days=30))
    assert linter.crl(der).errors
    first = process.pid
    assert first is not None
    os.kill(first, 9)  # the lint process this test started
    assert [f.code for f in linter.crl(der).errors] == [VALIDITY_CODE]
    assert process.started == 2
    assert process.pid not in (None, first)


def test_the_lint_process_outlives_a_ctrl_c_at_the_terminal(
    issuer: Issuer, process: CrlLintProcess
) -> None:
    """SIGINT reaches the CA's whole process group; the CA handles it, the lint process
    ignores it (and ends with its input)."""
    linter = Linter(crl_process=process)
    der = _crl(issuer, 3, timedelta(days=1))
    assert linter.crl(der).findings == ()
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)  # the lint process this test started
    assert linter.crl(der).findings == ()
    assert process.started == 1 and process.pid == pid


def test_the_lint_process_runs_below_the_cas_priority(
    issuer: Issuer, process: CrlLintProcess
) -> None:
    from acmekit.server.crl_lint_worker import NICENESS

    Linter(crl_process=process).crl(_crl(issuer, 3, timedelta(days=1)))
    assert process.pid is not None
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, process.pid) == min(mine + NICENESS, 19)


def test_a_hung_lint_process_is_ended_at_its_deadline_and_replaced(
    issuer: Issuer, process: CrlLintProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lint process that stops answering (here stopped by SIGSTOP) would hold the CRL
    rebuilder's thread, and every CRL after, for ever: it is ended at its deadline and
    the CRL comes back with one error finding, the next one linted by a new process."""
    linter = Linter(crl_process=process)
    assert linter.crl(_crl(issuer, 3, timedelta(days=1))).findings == ()
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)
    with monkeypatch.context() as short:
        short.setattr(CrlLintProcess, "deadline", staticmethod(lambda der: 0.5))
        report = linter.crl(_crl(issuer, 3, timedelta(days=1)))
    # The usual deadline again: the new process's start (pkilint's imports) would not
    # always fit in half a second on a busy machine.
    assert [(f.code, f.severity) for f in report.findings] == [(lint.TIMED_OUT, Severity.ERROR)]
    assert process.pid is None
    assert linter.crl(_crl(issuer, 3, timedelta(days=30))).findings[0].code == VALIDITY_CODE
    assert process.started == 2


def test_a_lint_process_that_cannot_start_leaves_one_error_finding_not_an_exception(
    issuer: Issuer, process: CrlLintProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lint process that ends at once (here the interpreter is `false`; in the field a
    broken install) must not keep the CRL from being published: the lint comes back as
    one error finding, logged, rather than an exception out of the CRL's remaking."""
    false = shutil.which("false")
    assert false is not None
    monkeypatch.setattr(lint.sys, "executable", false)
    report = Linter(crl_process=process).crl(_crl(issuer, 3, timedelta(days=1)))
    assert [(f.code, f.severity) for f in report.findings] == [(lint.LINT_FAILED, Severity.ERROR)]
    assert process.pid is None


def test_the_lint_process_imports_nothing_from_the_cas_working_directory(
    issuer: Issuer,
    process: CrlLintProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m` puts the working directory first on the module path: a `json.py` (or
    an `acmekit/`) in the directory the CA was started from would be imported by the
    lint process instead of the installed one."""
    (tmp_path / "json.py").write_text("raise SystemExit('imported from the working directory')\n")
    monkeypatch.chdir(tmp_path)
    report = Linter(crl_process=process).crl(_crl(issuer, 3, timedelta(days=30)))
    assert [f.code for f in report.findings] == [VALIDITY_CODE]
    assert process.started == 1


def test_an_answer_out_of_step_is_not_taken_for_the_next_crls(
    issuer: Issuer, process: CrlLintProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line on the answers' stream that is no answer (here written to the process's
    standard output by its first start, as a C library could) must not shift every
    answer by one, each CRL logged with the previous one's findings: the process that
    wrote it is replaced, and the CRL asked again."""
    marker = tmp_path / "noise-written"
    (tmp_path / "sitecustomize.py").write_text(
        "import os, pathlib\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.touch()\n"
        "    os.write(1, b'a library says hello\\n')\n"
    )
    monkeypatch.setattr(lint.sys, "path", [str(tmp_path), *lint.sys.path])
    linter = Linter(crl_process=process)
    assert [f.code for f in linter.crl(_crl(issuer, 3, timedelta(days=30))).findings] == [
        VALIDITY_CODE
    ]
    assert marker.exists()
    assert linter.crl(_crl(issuer, 3, timedelta(days=1))).findings == ()
    assert process.started == 2


def test_a_lint_process_ended_by_sigterm_mid_lint_is_not_started_again(
    issuer: Issuer, process: CrlLintProcess
) -> None:
    """A service manager stopping the CA sends SIGTERM to its whole group: the lint
    process ends mid-lint, and starting another to lint the CRL again would hold the
    CA's stop for a process start and a whole lint. The CRL comes back with one error
    finding instead, and no process is left."""
    linter = Linter(crl_process=process)
    assert linter.crl(_crl(issuer, 3, timedelta(days=1))).findings == ()
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the lint process this test started: held mid-lint
    reports: list[lint.Report] = []
    asking = threading.Thread(
        target=lambda: reports.append(linter.crl(_crl(issuer, 3, timedelta(days=1))))
    )
    asking.start()
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGCONT)
    asking.join()
    assert [(f.code, f.severity) for f in reports[0].findings] == [
        (lint.LINT_FAILED, Severity.ERROR)
    ]
    assert process.started == 1 and process.pid is None


def test_abort_ends_the_lint_under_way_and_lints_nothing_until_resumed(
    issuer: Issuer, process: CrlLintProcess
) -> None:
    """The CA stopping does not wait for a lint (seconds for a big CRL, up to its
    deadline for a hung one): the lint under way comes back with one error finding,
    those after it too, without a process; `resume` lints again."""
    linter = Linter(crl_process=process)
    assert linter.crl(_crl(issuer, 3, timedelta(days=1))).findings == ()
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)  # the lint process this test started: hung
    reports: list[lint.Report] = []
    asking = threading.Thread(
        target=lambda: reports.append(linter.crl(_crl(issuer, 3, timedelta(days=1))))
    )
    asking.start()
    process.abort()
    asking.join()
    reports.append(linter.crl(_crl(issuer, 3, timedelta(days=30))))
    assert [[f.code for f in r.findings] for r in reports] == [[lint.LINT_FAILED]] * 2
    assert process.started == 1 and process.pid is None
    process.resume()
    assert [f.code for f in linter.crl(_crl(issuer, 3, timedelta(days=30))).findings] == [
        VALIDITY_CODE
    ]
    assert process.started == 2


def test_a_crl_pkilint_cannot_read_is_one_finding_from_the_same_process(
    process: CrlLintProcess, issuer: Issuer
) -> None:
    """pkilint raising on a CRL ends no process: one that ended would be started again
    only to fail the same way, a process start (pkilint's imports) lost each time."""
    linter = Linter(crl_process=process)
    report = linter.crl(b"\x30\x03\x02\x01\x00")  # DER, but no CRL
    assert [(f.code, f.severity) for f in report.findings] == [(lint.LINT_FAILED, Severity.ERROR)]
    assert "pkilint failed" in str(report.findings[0].message)
    assert linter.crl(_crl(issuer, 3, timedelta(days=1))).findings == ()
    assert process.started == 1

"""The CA stopping while a CRL is being linted (in the lint process, lint.CrlLintProcess)
does not wait for the lint: `AcmeApp.close` ends it, and the remaking it waits for
finishes without lints."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace

from acmekit.server.lint import CrlLintProcess
from acmekit.server.run import Assembly
from acmekit_testkit.waits import until


async def test_closing_the_app_ends_a_crl_lint_under_way(ca: Assembly) -> None:
    assert ca.crl.linter is not None and ca.crl.linter.enabled
    process = CrlLintProcess()
    ca.crl.linter = replace(ca.crl.linter, crl_process=process)
    try:
        await asyncio.to_thread(ca.crl.regenerate, 0)  # the lint process started
        assert process.pid is not None
        # Hung, as a lint of a big CRL is long: its deadline is a minute and more.
        os.kill(process.pid, signal.SIGSTOP)  # the lint process this test started
        ca.app.start()  # the start's refresh remakes the shards: its lint waits
        await until(lambda: process._lock.locked())
        # Guards a hang, asserts no timing: without the lint ended, the close would
        # wait for its deadline.
        await asyncio.wait_for(ca.app.close(), 30)
    finally:
        process.close()
    assert process.started == 1 and process.pid is None
    # Each shard remade, its lint ended or skipped.
    stored = [ca.store.certificates.crl(n) for n in range(ca.crl.settings.shards)]
    assert None not in stored
    # The process's linter lints again for whatever runs next.
    last = stored[-1]
    assert last is not None and ca.crl.linter.crl(last.der).findings == ()

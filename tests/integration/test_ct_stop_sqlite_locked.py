"""`acmekit ct` on SQLite whose write lock another connection holds: stopping it does
not wait out the 30 s busy timeout. Ctrl-C while it starts (its tree's first head
waits for the lock inside SQLite, where no signal handler runs) ends it on the
interrupt, not on "database is locked" once the busy timeout has passed."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from acmekit.ct.service import DB_FILE, CtConfig, assemble
from acmekit_testkit.ctlog import ca_hierarchy, ct_log_argv
from acmekit_testkit.processes import log_tail, logged_process, sleeping_thread, wait_until


def test_ctrl_c_ends_a_start_waiting_for_the_write_lock(tmp_path: Path) -> None:
    ca_hierarchy(tmp_path / "ca")
    roots = tmp_path / "ca" / "root.pem"
    state = tmp_path / "log"
    assemble(CtConfig(state_dir=state, roots=roots)).log.store.close()  # the database
    holder = sqlite3.connect(state / DB_FILE, isolation_level=None)
    output = tmp_path / "log.out"
    try:
        holder.execute("BEGIN IMMEDIATE")
        with logged_process(ct_log_argv(state, roots), output) as proc:
            wait_until(
                "the log waits for the write lock", lambda: sleeping_thread(proc.pid), 30, [output]
            )
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail("Ctrl-C did not end the log:\n" + log_tail(output))
            text = output.read_text()
            assert "database is locked" not in text, text
            assert "ct log:" not in text  # it never started
    finally:
        holder.close()

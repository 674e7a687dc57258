"""SIGTERM ends `acmekit ct` while its writer waits in the database: the store's close
is bounded, the writer thread does not keep the process alive, and the batch it was
writing answers no one with an SCT (it was never committed). And while its sequencer
waits there for the lease's row (another session holds it, as a half-open connection
would): the lease's release and the sequencing pass stuck there must not keep the
process alive. And while a read waits there (a lock, then a silent connection): the
read's thread must not keep it alive either."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from acmekit.ct.schema import entries
from acmekit.ct.store import _INDEX_LOCK
from acmekit.database import create_engine
from acmekit_testkit.ctlog import (
    RunningLog,
    ca_hierarchy,
    chain_json,
    leaf_certificate,
    running_ct_log,
)
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.freezerelay import freezable_relay
from acmekit_testkit.processes import log_tail, wait_until
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.postgres

WAITING = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
WAITING_FOR_ROW = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid "
    "WHERE NOT l.granted AND s.datname = current_database()"
)


def submit(url: str, body: bytes, outcome: list[object]) -> None:
    """One add-chain; what came back (a document, an HTTP error, a closed connection)."""
    req = urllib.request.Request(url + "ct/v1/add-chain", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            outcome.append(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        outcome.append(exc.code)
    except OSError as exc:  # the connection closed without an answer
        outcome.append(type(exc).__name__)


def _ends_on_one_sigterm(log: RunningLog, bound: float = 30) -> None:
    """One SIGTERM ends the log within `bound` seconds (a bound for a hang, not a speed)."""
    log.process.send_signal(signal.SIGTERM)
    try:
        log.process.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        pytest.fail("one SIGTERM did not end the log:\n" + log_tail(log.output))


def test_sigterm_ends_the_log_while_its_writer_waits_for_the_index_lock(
    tmp_path: Path,
) -> None:
    require_postgres_or_skip()
    issuer = ca_hierarchy(tmp_path / "ca")
    roots = tmp_path / "ca" / "root.pem"
    cert = leaf_certificate(issuer, "stuck.example")
    body = json.dumps(chain_json([cert, issuer.intermediate_cert])).encode()
    with fresh_postgres_database("acmekit_ct") as url:
        engine = create_engine(url)
        with engine.connect() as holder, running_ct_log(tmp_path / "log", roots, db=url) as log:
            # Another session holds the index lock every batch takes: the writer waits
            # for it inside the database, as behind a half-open connection.
            holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _INDEX_LOCK})
            holder.commit()
            outcome: list[object] = []
            client = threading.Thread(target=submit, args=(log.url, body, outcome))
            client.start()
            with engine.connect() as conn:
                wait_until(
                    "the batch waits for the lock",
                    lambda: conn.execute(sa.text(WAITING)).scalar_one() == 1,
                    30,
                    [log.output],
                )
            _ends_on_one_sigterm(log)
            client.join(timeout=60)
            assert outcome and not isinstance(outcome[0], dict), outcome  # no SCT
            assert "still being written" in log.output.read_text()
            holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _INDEX_LOCK})
            holder.commit()
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(entries)).scalar() == 0
        engine.dispose()


def test_sigterm_ends_the_log_while_its_sequencer_waits_for_the_lease(tmp_path: Path) -> None:
    require_postgres_or_skip()
    ca_hierarchy(tmp_path / "ca")  # writes the roots file
    roots = tmp_path / "ca" / "root.pem"
    with fresh_postgres_database("acmekit_ct") as url:
        engine = create_engine(url)
        with engine.connect() as holder, running_ct_log(tmp_path / "log", roots, db=url) as log:
            with engine.connect() as conn:
                wait_until(
                    "the log holds the lease",
                    lambda: (
                        conn.execute(sa.text("SELECT count(*) FROM ct_leases")).scalar_one() == 1
                    ),
                    30,
                    [log.output],
                )
            holder.execute(sa.text("SELECT * FROM ct_leases FOR UPDATE"))
            with engine.connect() as conn:
                wait_until(
                    "the sequencer waits for the lease's row",
                    lambda: conn.execute(sa.text(WAITING_FOR_ROW)).scalar_one() >= 1,
                    30,
                    [log.output],
                )
            try:
                _ends_on_one_sigterm(log)
            finally:
                holder.rollback()
        engine.dispose()


# pg_locks, not pg_stat_activity, whose rows a session reads once a transaction
WAITING_ON_ISSUERS = (
    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'ct_issuers'::regclass"
)


def _read(url: str, outcome: list[object]) -> None:
    """One GET; its status, or what ended it without an answer."""
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            outcome.append(resp.status)
    except urllib.error.HTTPError as exc:
        outcome.append(exc.code)
    except OSError as exc:
        outcome.append(type(exc).__name__)


def test_sigterm_ends_the_log_while_a_read_waits_for_the_database(tmp_path: Path) -> None:
    """A read handler's query waits for a table another session holds, and then its
    connection goes silent (a relay between the log and PostgreSQL holds all traffic,
    as a half-open connection would): the server's statement timeout cannot answer it.
    The read is on a daemon thread, not the loop's default executor, which `asyncio.run`
    and the interpreter join at exit."""
    require_postgres_or_skip()
    ca_hierarchy(tmp_path / "ca")
    roots = tmp_path / "ca" / "root.pem"
    with fresh_postgres_database("acmekit_ct") as url:
        direct = make_url(url)
        engine = create_engine(url)
        with (
            freezable_relay(direct.port or 5432) as relay,
            engine.connect() as holder,
            running_ct_log(tmp_path / "log", roots, db=_through(direct, relay.port)) as log,
        ):
            holder.execute(sa.text("LOCK TABLE ct_issuers IN ACCESS EXCLUSIVE MODE"))
            outcome: list[object] = []
            reader = threading.Thread(target=_read, args=(log.url + "issuer/" + "ab" * 32, outcome))
            reader.start()
            try:
                with engine.connect() as conn:
                    wait_until(
                        "the read waits for the table",
                        lambda: conn.execute(sa.text(WAITING_ON_ISSUERS)).scalar_one() == 1,
                        30,
                        [log.output],
                    )
                relay.freeze()
                _ends_on_one_sigterm(log, bound=60)
            finally:
                holder.rollback()
            reader.join(timeout=120)
            assert outcome and outcome[0] != 200, outcome
        engine.dispose()


def _through(direct: URL, port: int) -> str:
    """The database URL by way of the relay on `port`."""
    return direct.set(port=port).render_as_string(hide_password=False)

"""`acmekit server db purge` on SQLite and PostgreSQL: --dry-run prints what is due and
deletes nothing, the command deletes it and prints the same counts, and a CA configured
not to upgrade its schema (--no-auto-upgrade) is refused on an older one, as every
operator command is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from acmekit import migrate
from acmekit.cli.main import cli
from acmekit.database import create_engine
from acmekit.migrate import SERVER
from acmekit.server.config import ServerConfig
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS


def _run(config: ServerConfig, *args: str, before: tuple[str, ...] = ()) -> tuple[int, str]:
    argv = ["server", *before, "db", "purge", *args]
    argv += ["--state-dir", str(config.state_dir), "--db", str(config.db)]
    result = CliRunner().invoke(cli, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _count(config: ServerConfig, table: str) -> int:
    engine = create_engine(str(config.db))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


async def test_dry_run_counts_and_the_purge_deletes(
    ca_config: ServerConfig, responder: Http01Responder
) -> None:
    # Two months ago: an order left pending (past its week and the 30 days' grace by
    # now) and a certificate (its order and validated authorization kept).
    then = datetime.now(UTC) - timedelta(days=60)
    ca = assemble(ca_config, now=lambda: then)
    try:
        flow = Flow(RawAcme(ca.app), responder)
        await flow.account()
        assert (await flow.order("left.command.test")).status == 201
        await flow.one_certificate("issued.command.test")
    finally:
        await ca.app.close()
        ca.store.engine.dispose()
    challenges = _count(ca_config, "challenges")
    buckets = _count(ca_config, "rate_buckets")  # all full again by now
    assert buckets > 0
    code, out = _run(ca_config, "--dry-run")
    assert code == 0, out
    left = challenges // 2
    due = f"1 orders, 1 authorizations, {left} challenges, {buckets} rate-limit buckets"
    assert out == f"due: {due}\n"
    assert (_count(ca_config, "orders"), _count(ca_config, "authorizations")) == (2, 2)
    code, out = _run(ca_config)
    assert code == 0, out
    assert out == f"deleted: {due}\n"
    assert (_count(ca_config, "orders"), _count(ca_config, "authorizations")) == (1, 1)
    assert _count(ca_config, "challenges") == challenges - left
    assert _count(ca_config, "certificates") == 1
    assert _count(ca_config, "rate_buckets") == 0
    code, out = _run(ca_config, "--dry-run")
    assert out == "due: 0 orders, 0 authorizations, 0 challenges, 0 rate-limit buckets\n"


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_an_old_schema_not_to_be_upgraded_is_refused(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, "old.db") as url:
        engine = create_engine(url)
        try:
            migrate.upgrade(engine, SERVER, "0012")
            config = ServerConfig(state_dir=tmp_path / "state", db=url)
            code, out = _run(config, before=("--no-auto-upgrade",))
            assert code == 1, out
            assert "run `acmekit server db upgrade`" in out
            assert migrate.current(engine, SERVER) == "0012"
            code, out = _run(config, "--dry-run")  # upgrading, as configured by default
            assert code == 0, out
            assert migrate.current(engine, SERVER) == migrate.head(SERVER)
        finally:
            engine.dispose()

"""`acmekit server db purge` on SQLite and PostgreSQL: --dry-run prints what is due and
deletes nothing, the command deletes it and prints the same counts, and a CA configured
not to upgrade its schema (--no-auto-upgrade) is refused on an older one, as every
operator command is. Without --config it purges by the grace and retention the serving
CA recorded at its start (not the defaults, which a longer retention would have been
bypassed by), and says which it applied and where they came from."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from acmekit import migrate
from acmekit.cli.main import cli
from acmekit.database import create_engine
from acmekit.migrate import SERVER
from acmekit.server.config import PurgeSettings, ServerConfig
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

DEFAULTS = (
    "grace 30 days, retention 730 days (defaults: no server start recorded; --config "
    "must name the server's TOML file)\n"
)


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
    assert out == f"{DEFAULTS}due: {due}\n"
    assert (_count(ca_config, "orders"), _count(ca_config, "authorizations")) == (2, 2)
    code, out = _run(ca_config)
    assert code == 0, out
    assert out == f"{DEFAULTS}deleted: {due}\n"
    assert (_count(ca_config, "orders"), _count(ca_config, "authorizations")) == (1, 1)
    assert _count(ca_config, "challenges") == challenges - left
    assert _count(ca_config, "certificates") == 1
    assert _count(ca_config, "rate_buckets") == 0
    code, out = _run(ca_config, "--dry-run")
    assert out == f"{DEFAULTS}due: 0 orders, 0 authorizations, 0 challenges, 0 rate-limit buckets\n"


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


async def _start_and_stop(ca: Any) -> None:
    """The ASGI lifespan's start (where the CA records its purge settings) and stop."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in ("lifespan.startup", "lifespan.shutdown"):
        await inbox.put({"type": message})

    async def send(message: dict[str, Any]) -> None:
        pass

    await ca.app({"type": "lifespan"}, inbox.get, send)


async def test_without_config_the_servers_recorded_retention_applies(
    ca_config: ServerConfig, responder: Http01Responder, tmp_path: Path
) -> None:
    """The server keeps validations 1000 days past the longest validity; one validated
    1150 days and more ago is due under the default 730, not under the server's."""
    then = datetime.now(UTC) - timedelta(days=30 + 398 + 750)
    longer = replace(ca_config, purge=PurgeSettings(retention=timedelta(days=1000)))
    ca = assemble(longer, now=lambda: then)
    try:
        flow = Flow(RawAcme(ca.app), responder)
        await flow.account()
        await flow.one_certificate("kept.command.test")
        await _start_and_stop(ca)
    finally:
        await ca.app.close()
        ca.store.engine.dispose()
    code, out = _run(ca_config)
    assert code == 0, out
    recorded = "grace 30 days, retention 1000 days (as the server recorded at its last start)"
    assert out.splitlines()[0] == recorded
    assert _count(ca_config, "authorizations") == 1
    # Named by --config, the file's settings apply (here the defaults, with the path).
    toml = tmp_path / "other.toml"
    toml.write_text("[purge]\nretention = 63072000\n")
    code, out = _run(ca_config, "--dry-run", "--config", str(toml))
    assert out.splitlines()[0] == f"grace 30 days, retention 730 days (from {toml})"
    assert "1 authorizations" in out.splitlines()[1]

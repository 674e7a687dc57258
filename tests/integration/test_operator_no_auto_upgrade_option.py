"""`acmekit server --no-auto-upgrade` before an operator command's name: the option is
the configuration's `auto_upgrade = false` as the start takes it, so the command refuses
an older schema as it does given the TOML line, rather than take the option and upgrade
the database under the CA's running processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from acmekit import migrate
from acmekit.cli.main import cli
from acmekit.database import create_engine
from acmekit.migrate import SERVER
from acmekit_testkit.databases import fresh_postgres_database


@contextmanager
def _database(kind: str, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """The database's URL and the options naming it."""
    if kind == "sqlite":
        state = tmp_path / "state"
        state.mkdir()
        yield f"sqlite:///{state / 'acmekit.db'}", ["--state-dir", str(state)]
        return
    with fresh_postgres_database("acmekit_no_upgrade_option") as url:
        yield url, ["--db", url]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_option_before_an_operator_command_leaves_the_schema(tmp_path: Path, kind: str) -> None:
    with _database(kind, tmp_path) as (url, where):
        engine = create_engine(url)
        try:
            migrate.upgrade(engine, SERVER, "0009")
            command = ["server", "--no-auto-upgrade", *where]
            result = CliRunner().invoke(cli, [*command, "accounts", "list"])
            assert result.exit_code == 1, result.output
            assert "run `acmekit server db upgrade`" in result.output
            assert migrate.current(engine, SERVER) == "0009"
            # `db upgrade` is how such a CA's schema changes: the option does not stop it
            result = CliRunner().invoke(cli, [*command, "db", "upgrade"])
            assert result.exit_code == 0, result.output
            assert migrate.current(engine, SERVER) == migrate.head(SERVER)
            result = CliRunner().invoke(cli, [*command, "accounts", "list"])
            assert result.exit_code == 0, result.output
        finally:
            engine.dispose()

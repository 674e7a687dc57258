"""`acmekit server --no-auto-upgrade` before an operator command's name: the option is
the configuration's `auto_upgrade = false` as the start takes it, so the command refuses
an older schema as it does given the TOML line, rather than take the option and upgrade
the database under the CA's running processes."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from acmekit import migrate
from acmekit.cli.main import cli
from acmekit.database import create_engine
from acmekit.migrate import SERVER


def test_the_option_before_an_operator_command_leaves_the_schema(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    engine = create_engine(f"sqlite:///{state / 'acmekit.db'}")
    try:
        migrate.upgrade(engine, SERVER, "0009")
        args = ["server", "--no-auto-upgrade", "--state-dir", str(state), "accounts", "list"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert "run `acmekit server db upgrade`" in result.output
        assert migrate.current(engine, SERVER) == "0009"
        # `db upgrade` is how such a CA's schema is changed: the option does not stop it
        args = ["server", "--no-auto-upgrade", "--state-dir", str(state), "db", "upgrade"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert migrate.current(engine, SERVER) == migrate.head(SERVER)
        args = ["server", "--no-auto-upgrade", "--state-dir", str(state), "accounts", "list"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    finally:
        engine.dispose()

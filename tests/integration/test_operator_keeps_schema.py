"""An operator command of a newer release on the CA's database of a CA configured not to
upgrade its schema itself (`auto_upgrade = false`, as `--no-auto-upgrade`): it refuses
with the line naming `acmekit server db upgrade`, as a start does, and leaves the schema
where it was. Upgrading there (a read such as `accounts list`) would change the schema
under the CA's running processes, of the older release, when the operator chose to."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from acmekit import migrate
from acmekit.cli.main import cli
from acmekit.database import create_engine
from acmekit.migrate import SERVER


def test_an_operator_command_leaves_a_schema_not_to_be_upgraded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    engine = create_engine(f"sqlite:///{state / 'acmekit.db'}")
    try:
        migrate.upgrade(engine, SERVER, "0009")
        config = tmp_path / "ca.toml"
        config.write_text(f'state_dir = "{state}"\nauto_upgrade = false\n')
        result = CliRunner().invoke(cli, ["server", "accounts", "list", "--config", str(config)])
        assert result.exit_code == 1, result.output
        assert "run `acmekit server db upgrade`" in result.output
        assert migrate.current(engine, SERVER) == "0009"
        # configured to upgrade (the default), the command does, as before
        config.write_text(f'state_dir = "{state}"\n')
        result = CliRunner().invoke(cli, ["server", "accounts", "list", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert migrate.current(engine, SERVER) == migrate.head(SERVER)
        # at this release's schema, not to be upgraded: the command runs
        config.write_text(f'state_dir = "{state}"\nauto_upgrade = false\n')
        result = CliRunner().invoke(cli, ["server", "accounts", "list", "--config", str(config)])
        assert result.exit_code == 0, result.output
    finally:
        engine.dispose()

"""`acmekit`: one command, one subcommand per program (see the design's CLI contract).

Each program's commands live in their own module and are attached here, so that a
program's dependencies load only when it runs.
"""

from __future__ import annotations

import importlib
import logging

import click

# subcommand name -> "module:attribute" of a click command
_COMMANDS: dict[str, str] = {
    "server": "acmekit.cli.server:server",
    "dns": "acmekit.cli.dns:dns",
    "fleet": "acmekit.cli.fleet:fleet",
    "certonly": "acmekit.cli.client:certonly",
    "renew": "acmekit.cli.client:renew",
    "revoke": "acmekit.cli.client:revoke",
    "certificates": "acmekit.cli.client:certificates",
    "delete": "acmekit.cli.client:delete",
    "register": "acmekit.cli.client:register",
    "show_account": "acmekit.cli.client:show_account",
    "update_account": "acmekit.cli.client:update_account",
    "unregister": "acmekit.cli.client:unregister",
    "check": "acmekit.cli.client:check",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="acmekit")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
def cli(verbose: int) -> None:
    """ACME end to end: certificate authority, client, DNS server and fleet manager."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    cli(prog_name="acmekit")

"""`acmekit`: one command, one subcommand per program (see the design's CLI contract).

Each program's commands live in their own module and are attached here, so that a
program's dependencies load only when it runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TextIO

import click

from acmekit.loglines import LineFormatter, LineHandler

# subcommand name -> "module:attribute" of a click command
_COMMANDS: dict[str, str] = {
    "server": "acmekit.cli.server:server",
    "dns": "acmekit.cli.dns:dns",
    "ct": "acmekit.cli.ct:ct",
    "fleet": "acmekit.cli.fleet:fleet",
    "certonly": "acmekit.cli.client:certonly",
    "renew": "acmekit.cli.client:renew",
    "reconfigure": "acmekit.cli.client:reconfigure",
    "revoke": "acmekit.cli.client:revoke",
    "certificates": "acmekit.cli.client:certificates",
    "delete": "acmekit.cli.client:delete",
    "update_symlinks": "acmekit.cli.client:update_symlinks",
    "register": "acmekit.cli.client:register",
    "show_account": "acmekit.cli.client:show_account",
    "update_account": "acmekit.cli.client:update_account",
    "persist-record": "acmekit.cli.client:persist_record",
    "unregister": "acmekit.cli.client:unregister",
    "check": "acmekit.cli.client:check",
    "run": "acmekit.cli.client:run",
    "install": "acmekit.cli.client:install",
    "rollback": "acmekit.cli.client:rollback",
    "schedule": "acmekit.cli.schedule:schedule",
}
_GROUP_OPTIONS = {"-v", "-vv", "-vvv", "--verbose", "-q", "--quiet"}
_GROUP_FLAGS = {"--help", "-h", "--version"}


def with_default_command(argv: list[str]) -> list[str]:
    """certbot's rules for where the command goes: flags with no command mean `run`
    (`acmekit --nginx -d NAME` is `acmekit run --nginx -d NAME`), and a client command
    may come after flags (`acmekit --nginx rollback`) where no flag takes it as its value."""
    argv = _verbosity_first(argv)
    i = 0
    while i < len(argv) and argv[i] in _GROUP_OPTIONS:
        i += 1
    if i >= len(argv) or not argv[i].startswith("-") or argv[i] in _GROUP_FLAGS:
        return argv
    head, rest = argv[:i], argv[i:]
    with_value = _options_with_values()
    j = 0
    while j < len(rest) and rest[j].startswith("-"):
        j += 2 if rest[j] in with_value else 1
    if j < len(rest) and rest[j] in _CLIENT_COMMANDS:
        return [*head, rest[j], *rest[:j], *rest[j + 1 :]]
    return [*head, "run", *rest]


def _verbosity_first(argv: list[str]) -> list[str]:
    """certbot takes `-v` anywhere (`certbot renew -v`); click only before the command. A
    client command's `-v`s move to the front, unless one is another option's value."""
    if not any(a in _GROUP_OPTIONS for a in argv) or not _CLIENT_COMMANDS & set(argv):
        return argv
    with_value = _options_with_values()
    moved: list[str] = []
    kept: list[str] = []
    for arg in argv:
        if arg in _GROUP_OPTIONS and not (kept and kept[-1] in with_value):
            moved.append(arg)
        else:
            kept.append(arg)
    return [*moved, *kept]


_CLIENT_COMMANDS = {
    n for n, target in _COMMANDS.items() if target.startswith("acmekit.cli.client:")
}


def _options_with_values() -> set[str]:
    """Every option of the client commands that takes a value (`--cert-name NAME`)."""
    module = importlib.import_module("acmekit.cli.client")
    found: set[str] = set()
    for name in _CLIENT_COMMANDS:
        command = getattr(module, _COMMANDS[name].split(":")[1])
        for param in command.params:
            if isinstance(param, click.Option) and not (param.is_flag or param.count):
                found.update(param.opts)
    return found


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


# Every command's log lines: no field a LogRecord finds at some cost (the caller's
# frame), so the CA's loggers skip that lookup while no handler shows or reads it
# (loglines.lighter_log_records).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int, stream: TextIO | None = None) -> None:
    """`logging.basicConfig(level=level, format=LOG_FORMAT, stream=stream)` (standard
    error by default; nothing if the root logger has a handler already), with the
    same lines written by `loglines`' handler and formatter, for less work a line."""
    handler = LineHandler(stream)
    handler.setFormatter(LineFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


@click.group(cls=_LazyGroup)
@click.version_option(package_name="acmekit")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option(
    "-q", "--quiet", is_flag=True, help="Only errors, and no questions (certbot's -q, for cron)."
)
def cli(verbose: int, quiet: bool) -> None:
    """ACME end to end: certificate authority, client, DNS server and fleet manager."""
    level = logging.ERROR if quiet else logging.WARNING - 10 * min(verbose, 2)
    configure_logging(level)
    if quiet:
        # certbot's -q: what a command reports goes nowhere and nothing waits for a
        # person; its errors (standard error, `acmekit: ...`) still show.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the process's lifetime
        sys.stdin = open(os.devnull)  # noqa: SIM115


def log_progress_by_default() -> None:
    """A long-running service (the CA, the fleet) reports each piece of work at INFO
    without -v: silence would hide whether it is working at all. Only our own loggers:
    libraries stay at the level -v chose."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("acmekit").setLevel(logging.INFO)


def one_line(exc: BaseException) -> str:
    """What went wrong, in one line: the message, and its kind where that helps."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    if isinstance(exc, ValueError | OSError):
        return text
    return f"{type(exc).__name__}: {text}"


def main() -> None:
    """Every failure a user meets is one line with one prefix, `acmekit: `, and a
    non-zero exit; only a mistyped command line shows click's usage text."""
    try:
        status = cli.main(
            args=with_default_command(sys.argv[1:]), prog_name="acmekit", standalone_mode=False
        )
    except click.UsageError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"acmekit: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("acmekit: aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # the last net: a user never sees a traceback (-vv logs it)
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        click.echo(f"acmekit: {one_line(exc)}", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)

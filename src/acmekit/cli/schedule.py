"""`acmekit schedule install | show | remove`: the renewal schedule (acmekit.certbot.
schedule): a systemd timer where systemd runs, else a cron entry, as certbot's packages
install one. `--root DIR` writes under DIR instead of `/` (tests, image builds); only on
`/` is systemctl asked to enable or disable the timer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click

from acmekit.certbot.schedule import (
    TIMER,
    Scheduler,
    files_for,
    install,
    installed,
    remove,
    renew_argv,
    systemd_runs,
)


def _program() -> list[str]:
    """This acmekit, by absolute path: cron and systemd have their own PATH."""
    script = Path(sys.executable).with_name("acmekit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "acmekit"]


def _kind(systemd: bool, cron: bool, root: Path) -> Scheduler:
    if systemd and cron:
        raise click.UsageError("give one of --systemd and --cron")
    if systemd or cron:
        return Scheduler.SYSTEMD if systemd else Scheduler.CRON
    return Scheduler.SYSTEMD if systemd_runs(root) else Scheduler.CRON


def _systemctl(*args: str) -> None:
    """systemctl on this machine (root `/` only); a failure is said, not fatal."""
    if shutil.which("systemctl") is None:
        click.echo("systemctl not found: enable the timer yourself", err=True)
        return
    done = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        click.echo(f"acmekit: systemctl {' '.join(args)}: {reason}", err=True)


root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Directory the files go under (their paths are as under /).",
)
kind_options = [
    click.option("--systemd", is_flag=True, help="A systemd timer (default where systemd runs)."),
    click.option("--cron", is_flag=True, help="A cron entry in /etc/cron.d (default otherwise)."),
]


@click.group()
def schedule() -> None:
    """Run `acmekit renew` twice a day: a systemd timer, or a cron entry."""


@schedule.command("install")
@root_option
@kind_options[0]
@kind_options[1]
@click.option("--config-dir", type=click.Path(path_type=Path), default=None)
@click.option("--work-dir", type=click.Path(path_type=Path), default=None)
@click.option("--logs-dir", type=click.Path(path_type=Path), default=None)
def install_command(
    root: Path,
    systemd: bool,
    cron: bool,
    config_dir: Path | None,
    work_dir: Path | None,
    logs_dir: Path | None,
) -> None:
    """Install the schedule (replacing one already there); the directories given are
    passed to `renew`."""
    kind = _kind(systemd, cron, root)
    options: list[str] = []
    for flag, value in (("--config-dir", config_dir), ("--work-dir", work_dir),
                        ("--logs-dir", logs_dir)):  # fmt: skip
        if value is not None:
            options += [flag, str(value.absolute())]
    other = [k for k in installed(root) if k != kind]
    for path in remove(root, other):
        click.echo(f"removed {path}")
    for path in install(root, files_for(kind, renew_argv(_program(), options))):
        click.echo(f"installed {path}")
    if kind == Scheduler.SYSTEMD and root == Path("/"):
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", TIMER)
    click.echo(f"acmekit renew runs twice a day ({kind})")


@schedule.command("show")
@root_option
def show_command(root: Path) -> None:
    """Show the installed schedule: its files and what they run."""
    found = installed(root)
    if not found:
        click.echo("No renewal schedule installed.")
        return
    for kind, paths in found.items():
        click.echo(f"{kind}:")
        for path in paths:
            click.echo(f"== {path}")
            click.echo(path.read_text(), nl=False)


@schedule.command("remove")
@root_option
@kind_options[0]
@kind_options[1]
def remove_command(root: Path, systemd: bool, cron: bool) -> None:
    """Remove the schedule (both kinds unless one is named)."""
    kinds = [k for k, on in ((Scheduler.SYSTEMD, systemd), (Scheduler.CRON, cron)) if on]
    kinds = kinds or list(Scheduler)
    if Scheduler.SYSTEMD in kinds and root == Path("/") and Scheduler.SYSTEMD in installed(root):
        _systemctl("disable", "--now", TIMER)
    removed = remove(root, kinds)
    for path in removed:
        click.echo(f"removed {path}")
    if not removed:
        click.echo("No renewal schedule installed.")

"""The renewal schedule: `acmekit renew` run twice a day by a systemd timer where
systemd runs, or by a cron entry otherwise, as certbot's Debian package installs it.

Both wait a random time of up to 12 hours before they start (the timer's
`RandomizedDelaySec`, cron's `perl -e 'sleep int(rand(43200))'`), so that renewals
from many machines spread over the day, and then run `renew --no-random-sleep-on-renew`
(the delay is already taken). Files are written under a root directory (`/` on a real
machine; any directory in tests and image builds) and nothing else is touched here:
enabling the timer is the command line's business.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Scheduler(StrEnum):
    SYSTEMD = "systemd"
    CRON = "cron"


TIMER = "acmekit-renew.timer"
SERVICE = "acmekit-renew.service"
SYSTEMD_DIR = Path("etc/systemd/system")
CRON_FILE = Path("etc/cron.d/acmekit")
HALF_A_DAY = 12 * 3600


@dataclass(frozen=True)
class ScheduleFile:
    path: Path  # relative to the root
    text: str
    mode: int = 0o644


def systemd_runs(root: Path) -> bool:
    """sd_booted(3)'s test: systemd is the init system when this directory exists."""
    return (root / "run/systemd/system").is_dir()


def renew_argv(program: Sequence[str], options: Sequence[str]) -> list[str]:
    return [*program, "renew", "--no-random-sleep-on-renew", *options]


def systemd_files(argv: Sequence[str]) -> list[ScheduleFile]:
    service = (
        "[Unit]\n"
        "Description=Renew certificates with acmekit\n"
        "Documentation=man:certbot(1)\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={shlex.join(argv)}\n"
        "PrivateTmp=true\n"
    )
    timer = (
        "[Unit]\n"
        "Description=Run acmekit renew twice daily\n"
        "\n"
        "[Timer]\n"
        "OnCalendar=*-*-* 00,12:00:00\n"
        f"RandomizedDelaySec={HALF_A_DAY}\n"
        "Persistent=true\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return [ScheduleFile(SYSTEMD_DIR / SERVICE, service), ScheduleFile(SYSTEMD_DIR / TIMER, timer)]


def cron_files(argv: Sequence[str]) -> list[ScheduleFile]:
    # A cron.d line may not hold an unescaped "%", which perl's sleep avoids.
    command = f"perl -e 'sleep int(rand({HALF_A_DAY}))' && {shlex.join(argv)}"
    text = (
        "# acmekit renew twice a day, after a random delay of up to 12 hours\n"
        "SHELL=/bin/sh\n"
        "PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n"
        "\n"
        f"0 */12 * * * root {command}\n"
    )
    return [ScheduleFile(CRON_FILE, text)]


def files_for(kind: Scheduler, argv: Sequence[str]) -> list[ScheduleFile]:
    return systemd_files(argv) if kind == Scheduler.SYSTEMD else cron_files(argv)


def install(root: Path, files: Sequence[ScheduleFile]) -> list[Path]:
    """Write `files` under `root`, each atomically (a cron daemon may read at any time)."""
    written = []
    for f in files:
        target = root / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.new")
        temporary.write_text(f.text)
        temporary.chmod(f.mode)
        os.replace(temporary, target)
        written.append(target)
    return written


def installed(root: Path) -> dict[Scheduler, list[Path]]:
    """The schedule files present under `root`, by scheduler."""
    systemd = [root / SYSTEMD_DIR / n for n in (SERVICE, TIMER)]
    found = {
        Scheduler.SYSTEMD: [p for p in systemd if p.exists()],
        Scheduler.CRON: [p for p in [root / CRON_FILE] if p.exists()],
    }
    return {kind: paths for kind, paths in found.items() if paths}


def remove(root: Path, kinds: Sequence[Scheduler]) -> list[Path]:
    removed = []
    for kind, paths in installed(root).items():
        if kind in kinds:
            for path in paths:
                path.unlink()
                removed.append(path)
    return removed

"""`acmekit schedule`: the renewal schedule written under a root directory (never the
real /etc here), as a systemd timer (checked by `systemd-analyze verify`) or a cron
entry, chosen by whether systemd runs under that root; `show` prints it, `remove`
removes it, and the command each one runs does renew."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ACMEKIT = [sys.executable, "-m", "acmekit"]


def _acmekit(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*ACMEKIT, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def _dirs(tmp: Path) -> list[str]:
    return ["--config-dir", str(tmp / "le/etc"), "--work-dir", str(tmp / "le/work"),
            "--logs-dir", str(tmp / "le/logs")]  # fmt: skip


def _runs_renew(command: str) -> None:
    """`command` (a shell command line) is a renew over the lineages of the dirs given."""
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "No certificates found."


def test_a_systemd_timer_where_systemd_runs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "run/systemd/system").mkdir(parents=True)
    installed = _acmekit("schedule", "install", "--root", str(root), *_dirs(tmp_path))
    assert installed.stdout.splitlines()[-1] == "acmekit renew runs twice a day (systemd)"
    units = root / "etc/systemd/system"
    timer = (units / "acmekit-renew.timer").read_text()
    assert "OnCalendar=*-*-* 00,12:00:00\n" in timer and "RandomizedDelaySec=43200\n" in timer
    assert "Persistent=true\n" in timer and "WantedBy=timers.target\n" in timer
    service = (units / "acmekit-renew.service").read_text()
    (exec_start,) = [ln for ln in service.splitlines() if ln.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[-8:] == ["renew", "--no-random-sleep-on-renew", *_dirs(tmp_path)]
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(units / "acmekit-renew.timer"),
         str(units / "acmekit-renew.service")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    _runs_renew(shlex.join(argv))

    shown = _acmekit("schedule", "show", "--root", str(root)).stdout
    assert shown.startswith("systemd:\n") and exec_start in shown and timer in shown
    removed = _acmekit("schedule", "remove", "--root", str(root)).stdout
    assert removed.count("removed ") == 2
    assert list(units.iterdir()) == []
    assert _acmekit("schedule", "show", "--root", str(root)).stdout == (
        "No renewal schedule installed.\n"
    )


def test_a_cron_entry_elsewhere_and_switching_to_systemd_replaces_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installed = _acmekit("schedule", "install", "--root", str(root), *_dirs(tmp_path))
    assert installed.stdout.splitlines()[-1] == "acmekit renew runs twice a day (cron)"
    cron = root / "etc/cron.d/acmekit"
    assert cron.stat().st_mode & 0o777 == 0o644
    (line,) = [ln for ln in cron.read_text().splitlines() if ln.startswith("0 ")]
    fields = line.split(maxsplit=6)
    assert fields[:6] == ["0", "*/12", "*", "*", "*", "root"]
    delay, renew = fields[6].split(" && ")
    assert delay == "perl -e 'sleep int(rand(43200))'" and "%" not in line
    _runs_renew(renew)
    shown = _acmekit("schedule", "show", "--root", str(root)).stdout
    assert shown.startswith("cron:\n") and line in shown

    switched = _acmekit("schedule", "install", "--systemd", "--root", str(root))
    assert f"removed {cron}" in switched.stdout and not cron.exists()
    assert (root / "etc/systemd/system/acmekit-renew.timer").exists()
    assert _acmekit("schedule", "remove", "--cron", "--root", str(root)).stdout == (
        "No renewal schedule installed.\n"
    )


def test_one_kind_at_a_time(tmp_path: Path) -> None:
    done = subprocess.run(
        [*ACMEKIT, "schedule", "install", "--root", str(tmp_path), "--systemd", "--cron"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "give one of --systemd and --cron" in done.stderr

"""`renew` after what happens to real config dirs, against `acmekit server` as a process:
a config dir restored from a copy whose certificate the CA has seen replaced since, a
renewal killed after its archive files were written and before the live links moved,
a lineage whose certificate is junk among others that are fine, a lineage's own
`renew_before_expiry` beside the CA's renewal window, a SIGTERM mid-order, and a
SIGTERM while a deploy hook runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509

from acmekit.database import create_engine
from acmekit.server.schema import authorizations
from acmekit_testkit.acmekit_server import CaProcess, running_ca_process
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.processes import stop_process, until_gone

Ca = CaProcess[DnsServerHandle]
KINDS = ("cert", "chain", "fullchain", "privkey")
RENEW = ("renew", "--no-random-sleep-on-renew")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle) -> Iterator[Ca]:
    # An account per test, all from 127.0.0.1: more than new_accounts_per_ip's 10.
    off = {"rate_limits": {"enabled": False}}
    with running_ca_process(tmp_path_factory.mktemp("recovery-ca"), dns, off) as found:
        yield found


def acmekit(ca: Ca, base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_acmekit(ca.server.root_path, *args, *certbot_dirs(base))


def certonly(ca: Ca, base: Path, name: str, *more: str) -> None:
    got = acmekit(
        ca, base, "certonly", "-n", "--agree-tos", "-m", "ops@recovery.test",
        "--server", ca.server.directory_url, "--standalone",
        "--http-01-address", "127.0.0.1", "--http-01-port", str(ca.http01_port), "-d", name,
        *more,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr


def leaf(base: Path, name: str) -> x509.Certificate:
    path = base / "etc" / "live" / name / "cert.pem"
    return x509.load_pem_x509_certificate(path.read_bytes())


def links(base: Path, name: str) -> set[str]:
    live = base / "etc" / "live" / name
    return {os.readlink(live / f"{kind}.pem") for kind in KINDS}


def test_a_config_dir_restored_from_a_backup_renews(ca: Ca, tmp_path: Path) -> None:
    """The backup's certificate was replaced by a renewal made after the backup: the CA
    answers alreadyReplaced to `replaces`, and the renewal is ordered again without it."""
    name = "restored.recovery.test"
    backup = tmp_path / "backup"
    certonly(ca, tmp_path, name)
    shutil.copytree(tmp_path / "etc", backup, symlinks=True)
    renewed = acmekit(ca, tmp_path, *RENEW, "--force-renewal")
    assert renewed.returncode == 0, renewed.stderr
    lost = leaf(tmp_path, name)
    shutil.rmtree(tmp_path / "etc")
    shutil.copytree(backup, tmp_path / "etc", symlinks=True)

    got = acmekit(ca, tmp_path, *RENEW, "--force-renewal")
    assert got.returncode == 0, got.stderr
    assert f"{name}: renewed" in got.stdout
    assert leaf(tmp_path, name).serial_number != lost.serial_number
    assert "is already replaced" in (tmp_path / "logs" / "acmekit.log").read_text()
    again = acmekit(ca, tmp_path, *RENEW, "--force-renewal")  # and it stays renewable
    assert again.returncode == 0, again.stderr


def unswitch(ca: Ca, base: Path, name: str) -> x509.Certificate:
    """What a renewal killed after it wrote archive/*2.pem, before its first link
    switch, leaves: version 2 whole, the links at 1 as the last run made them. The
    certificate of version 2."""
    certonly(ca, base, name)
    live = base / "etc" / "live" / name
    made = (live / "cert.pem").lstat().st_mtime
    # A renewal outlives the certificate it replaces by its notAfter, which has whole
    # seconds: version 2 is issued in a later second than version 1 was.
    time.sleep(1.05 - time.time() % 1)
    got = acmekit(ca, base, *RENEW, "--force-renewal")
    assert got.returncode == 0, got.stderr
    issued = leaf(base, name)
    for kind in KINDS:
        (live / f"{kind}.pem").unlink()
        (live / f"{kind}.pem").symlink_to(f"../../archive/{name}/{kind}1.pem")
        os.utime(live / f"{kind}.pem", (made, made), follow_symlinks=False)
    assert leaf(base, name).serial_number != issued.serial_number
    return issued


def deploy_hook(base: Path) -> Path:
    """A script in renewal-hooks/deploy that notes each RENEWED_LINEAGE and its names."""
    hooks = base / "etc" / "renewal-hooks" / "deploy"
    hooks.mkdir(parents=True, exist_ok=True)
    marks = base / "deployed"
    (hooks / "note.sh").write_text(
        f'#!/bin/sh\necho "$RENEWED_LINEAGE $RENEWED_DOMAINS" >> {marks}\n'
    )
    (hooks / "note.sh").chmod(0o755)
    return marks


def test_a_version_written_before_the_links_moved_is_taken_up(ca: Ca, tmp_path: Path) -> None:
    """The next run points the links at version 2 (the certificate the CA issued, and
    counts as the replacement of version 1) rather than leave it unused, and deploys it
    as the killed run would have: the web server must not keep the old one."""
    name = "killed.recovery.test"
    issued = unswitch(ca, tmp_path, name)
    marks = deploy_hook(tmp_path)

    quiet = acmekit(ca, tmp_path, *RENEW, "--deploy-hook", f"echo flag >> {marks}")
    assert quiet.returncode == 0, quiet.stderr
    assert links(tmp_path, name) == {f"../../archive/{name}/{kind}2.pem" for kind in KINDS}
    assert leaf(tmp_path, name).serial_number == issued.serial_number
    assert f"{name}: adopted ({name})" in quiet.stdout
    assert f"lineage {name}: live links repointed at version 2" in quiet.stderr
    live = tmp_path / "etc" / "live" / name
    assert sorted(marks.read_text().splitlines()) == sorted(["flag", f"{live} {name}"])
    again = acmekit(ca, tmp_path, *RENEW)  # deployed once, not at every run
    assert f"{name}: not due for renewal yet" in again.stdout
    assert len(marks.read_text().splitlines()) == 2


def test_a_version_taken_up_by_certonly_is_deployed(ca: Ca, tmp_path: Path) -> None:
    """certonly for the lineage's names finds it not due once version 2 is live, and
    still deploys version 2, which no one had, then runs its post hook (no pre hook:
    nothing is requested)."""
    name = "killed-certonly.recovery.test"
    unswitch(ca, tmp_path, name)
    marks = deploy_hook(tmp_path)
    certonly(
        ca,
        tmp_path,
        name,
        "--pre-hook",
        f"echo pre >> {marks}",
        "--post-hook",
        f"echo post >> {marks}",
    )
    assert links(tmp_path, name) == {f"../../archive/{name}/{kind}2.pem" for kind in KINDS}
    live = tmp_path / "etc" / "live" / name
    assert marks.read_text().splitlines() == [f"{live} {name}", "post"]


@pytest.mark.parametrize("command", ["renew", "reconfigure", "certonly"])
def test_a_dry_run_leaves_an_unswitched_version_alone(ca: Ca, tmp_path: Path, command: str) -> None:
    """A dry run changes nothing on disk, the links included."""
    name = f"dry-{command}.recovery.test"
    unswitch(ca, tmp_path, name)
    if command == "renew":
        got = acmekit(ca, tmp_path, *RENEW, "--dry-run")
    elif command == "certonly":
        got = acmekit(
            ca, tmp_path, "certonly", "-n", "--dry-run", "--cert-name", name,
            "--server", ca.server.directory_url, "--standalone",
            "--http-01-address", "127.0.0.1", "--http-01-port", str(ca.http01_port), "-d", name,
        )  # fmt: skip
    else:
        got = acmekit(ca, tmp_path, "reconfigure", "--cert-name", name, "--deploy-hook", "true")
    assert got.returncode == 0, got.stderr
    assert links(tmp_path, name) == {f"../../archive/{name}/{kind}1.pem" for kind in KINDS}


def test_an_unreadable_certificate_fails_its_lineage_only(ca: Ca, tmp_path: Path) -> None:
    broken, fine = "c11.recovery.test", "c12.recovery.test"
    for name in (broken, fine):
        certonly(ca, tmp_path, name)
    (tmp_path / "etc" / "archive" / broken / "cert1.pem").write_text("junk\n")
    got = acmekit(ca, tmp_path, *RENEW)
    assert got.returncode == 1
    assert f"acmekit: {broken}: renewal failed: lineage {broken} has no readable certificate" in (
        got.stderr
    )
    assert f"{fine}: not due for renewal yet" in got.stdout


def test_renew_before_expiry_counts_beside_the_ari_window(ca: Ca, tmp_path: Path) -> None:
    """The CA's window lies weeks ahead; the lineage asks for renewal a year before
    expiry, so it is due now (certbot: due when either says so)."""
    name = "margin.recovery.test"
    certonly(ca, tmp_path, name)
    early = acmekit(ca, tmp_path, *RENEW)
    assert early.returncode == 0, early.stderr
    assert f"{name}: not due for renewal yet" in early.stdout
    assert "in the CA's renewal window (ARI)" in early.stdout
    conf = tmp_path / "etc" / "renewal" / f"{name}.conf"
    conf.write_text("renew_before_expiry = 365 days\n" + conf.read_text())
    due = acmekit(ca, tmp_path, *RENEW)
    assert due.returncode == 0, due.stderr
    assert f"{name}: renewed" in due.stdout


@pytest.mark.parametrize(
    ("margin", "outcome"),
    [
        ("99999999999 days", "renewal failed: interval '99999999999 days' is longer than"),
        ("1 month", "not due for renewal yet"),
        ("400d", "renewed"),
        ("30 days 12 hours", "not due for renewal yet"),
    ],
)
def test_a_lineage_margin_in_any_of_certbots_forms(
    ca: Ca, tmp_path: Path, margin: str, outcome: str
) -> None:
    """certbot's forms of `renew_before_expiry` read as certbot reads them; one too long
    to count with fails its own lineage, and the others are still looked at."""
    odd, fine = f"odd{len(margin)}.recovery.test", f"fine{len(margin)}.recovery.test"
    for name in (odd, fine):
        certonly(ca, tmp_path, name)
    conf = tmp_path / "etc" / "renewal" / f"{odd}.conf"
    conf.write_text(f"renew_before_expiry = {margin}\n" + conf.read_text())
    got = acmekit(ca, tmp_path, *RENEW)
    assert f"{odd}: {outcome}" in got.stdout + got.stderr
    assert f"{fine}: not due for renewal yet" in got.stdout
    assert "OverflowError" not in got.stderr


def test_sigterm_mid_order_cleans_up_as_ctrl_c_does(ca: Ca, tmp_path: Path) -> None:
    """A systemd stop while the client waits for its TXT record: the DNS hook's cleanup
    runs, the pending authorization is deactivated at the CA, the lock is released."""
    name = "sigterm.recovery.test"
    marks = tmp_path / "marks"
    marks.mkdir()
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\ntouch {marks}/"$1"\n')
    hook.chmod(0o755)
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(ca.server.root_path)}
    argv = [
        sys.executable, "-m", "acmekit", "certonly", "-n", "--agree-tos",
        "-m", "ops@recovery.test", "--server", ca.server.directory_url,
        "--dns-hook", str(hook), "--dns-resolver", f"127.0.0.1:{ca.dns.dns_port}",
        "--dns-propagation-seconds", "120", "-d", name, *certbot_dirs(tmp_path),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):  # the hook has published; the client now waits
            if (marks / "present").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert (marks / "present").exists(), proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode == 1, err
    assert err.decode().strip().endswith("acmekit: aborted")
    assert (marks / "cleanup").exists()
    engine = create_engine(f"sqlite:///{ca.server.state_dir / 'acmekit.db'}")
    with engine.begin() as conn:
        statuses = conn.execute(
            sa.select(authorizations.c.stored_status).where(
                authorizations.c.identifier_value == name
            )
        ).scalars()
        assert set(statuses) == {"deactivated"}
    engine.dispose()
    certonly(ca, tmp_path, name)  # the lock was released


def hook_dirs(base: Path, marks: Path) -> None:
    """A pre and a post script in renewal-hooks that note they ran and on what."""
    for kind in ("pre", "post"):
        folder = base / "etc" / "renewal-hooks" / kind
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "note.sh"
        script.write_text(f'#!/bin/sh\necho "{kind} $RENEWED_DOMAINS" >> {marks}\n')
        script.chmod(0o755)


def test_post_hooks_follow_a_version_taken_up_and_deployed(ca: Ca, tmp_path: Path) -> None:
    """certbot runs post hooks after any run that renewed: the killed run's never ran,
    and the run that deploys its version runs them; no pre hook, nothing is requested."""
    name = "killed-post.recovery.test"
    unswitch(ca, tmp_path, name)
    marks = tmp_path / "hooks"
    hook_dirs(tmp_path, marks)
    got = acmekit(ca, tmp_path, *RENEW, "--post-hook", f"echo given >> {marks}")
    assert got.returncode == 0, got.stderr
    assert f"{name}: adopted ({name})" in got.stdout
    assert marks.read_text().splitlines() == [f"post {name}", "given"]
    again = acmekit(ca, tmp_path, *RENEW)  # nothing renewed or deployed: no hook
    assert f"{name}: not due for renewal yet" in again.stdout
    assert len(marks.read_text().splitlines()) == 2


def test_a_version_after_an_unreadable_certificate_is_taken_up(ca: Ca, tmp_path: Path) -> None:
    """The live certificate spoiled, the names the killed renewal's version must have
    are read from the live version's full chain: it is taken up and deployed."""
    name = "unreadable.recovery.test"
    issued = unswitch(ca, tmp_path, name)
    marks = deploy_hook(tmp_path)
    (tmp_path / "etc" / "archive" / name / "cert1.pem").write_text("junk\n")
    got = acmekit(ca, tmp_path, *RENEW)
    assert got.returncode == 0, got.stderr
    assert f"{name}: adopted ({name})" in got.stdout
    assert leaf(tmp_path, name).serial_number == issued.serial_number
    assert marks.read_text().splitlines() == [f"{tmp_path / 'etc' / 'live' / name} {name}"]


def test_sigterm_during_a_deploy_hook_stops_it_and_leaves_it_owed(ca: Ca, tmp_path: Path) -> None:
    """A systemd stop while the deploy hook runs: the hook's processes stop with the
    client (none left running unowned), its post hooks run as it stops, and the next run
    deploys the live version, which the web server has not been given, then runs the
    post hooks again."""
    name = "deploy-sigterm.recovery.test"
    certonly(ca, tmp_path, name)
    slow, started, marks = tmp_path / "slow", tmp_path / "started", tmp_path / "deployed"
    hooks = tmp_path / "etc" / "renewal-hooks" / "deploy"
    (hooks / "slow.sh").write_text(
        "#!/bin/sh\n"
        f"if [ -e {slow} ]; then\n"  # a child of the hook's shell, noted once it runs
        f"  sleep 300 & echo $! > {started}.new; mv {started}.new {started}; wait\nfi\n"
        f'echo "$RENEWED_DOMAINS" >> {marks}\n'
    )
    (hooks / "slow.sh").chmod(0o755)
    slow.touch()
    noted = tmp_path / "hooks"
    hook_dirs(tmp_path, noted)
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(ca.server.root_path)}
    argv = [sys.executable, "-m", "acmekit", *RENEW, "--force-renewal", *certbot_dirs(tmp_path)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(1200):
            if started.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert started.exists(), proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode == 1, err
    assert err.decode().strip().endswith("acmekit: aborted")
    until_gone(int(started.read_text()))  # what the hook started, too
    assert not marks.exists()
    assert links(tmp_path, name) == {f"../../archive/{name}/{kind}2.pem" for kind in KINDS}

    # certbot's `renew` runs its post hooks in a `finally`: the stopped run too
    assert noted.read_text().splitlines() == ["pre ", "post "]

    slow.unlink()
    got = acmekit(ca, tmp_path, *RENEW)
    assert got.returncode == 0, got.stderr
    assert f"{name}: deployed ({name})" in got.stdout
    assert marks.read_text().splitlines() == [name]
    assert noted.read_text().splitlines()[2:] == [f"post {name}"]
    again = acmekit(ca, tmp_path, *RENEW)  # owed once, not at every run
    assert f"{name}: not due for renewal yet" in again.stdout
    assert marks.read_text().splitlines() == [name]


def test_a_due_lineage_owed_its_deploy_is_renewed(ca: Ca, tmp_path: Path) -> None:
    """A deploy hook that a timeout keeps stopping leaves its version owed at every run:
    once the lineage is due it is renewed (the new version is deployed, which covers the
    owed one), as certonly does, rather than only deployed again until it expires."""
    name = "owed-due.recovery.test"
    certonly(ca, tmp_path, name)
    first = leaf(tmp_path, name)
    marks = deploy_hook(tmp_path)
    owed = tmp_path / "etc" / "archive" / name / ".deploy-owed"
    owed.write_text("1\n")  # what a run stopped during the deploy hook leaves
    conf = tmp_path / "etc" / "renewal" / f"{name}.conf"
    conf.write_text("renew_before_expiry = 365 days\n" + conf.read_text())
    got = acmekit(ca, tmp_path, *RENEW)
    assert got.returncode == 0, got.stderr
    assert f"{name}: renewed" in got.stdout
    assert leaf(tmp_path, name).serial_number != first.serial_number
    assert links(tmp_path, name) == {f"../../archive/{name}/{kind}2.pem" for kind in KINDS}
    assert marks.read_text().splitlines() == [f"{tmp_path / 'etc' / 'live' / name} {name}"]
    assert not owed.exists()

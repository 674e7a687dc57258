"""`renew` after what happens to real config dirs, against `acmekit server` as a process:
a config dir restored from a copy whose certificate the CA has seen replaced since, a
renewal killed after its archive files were written and before the live links moved,
a lineage whose certificate is junk among others that are fine, a lineage's own
`renew_before_expiry` beside the CA's renewal window, and a SIGTERM mid-order."""

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
from acmekit_testkit.processes import stop_process

Ca = CaProcess[DnsServerHandle]
KINDS = ("cert", "chain", "fullchain", "privkey")
RENEW = ("renew", "--no-random-sleep-on-renew")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle) -> Iterator[Ca]:
    with running_ca_process(tmp_path_factory.mktemp("recovery-ca"), dns) as found:
        yield found


def acmekit(ca: Ca, base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_acmekit(ca.server.root_path, *args, *certbot_dirs(base))


def certonly(ca: Ca, base: Path, name: str) -> None:
    got = acmekit(
        ca, base, "certonly", "-n", "--agree-tos", "-m", "ops@recovery.test",
        "--server", ca.server.directory_url, "--standalone",
        "--http-01-address", "127.0.0.1", "--http-01-port", str(ca.http01_port), "-d", name,
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


def test_a_version_written_before_the_links_moved_is_taken_up(ca: Ca, tmp_path: Path) -> None:
    """A run killed after it wrote archive/*2.pem, before the first link switch: the
    next run points the links at version 2 (the certificate the CA issued, and counts
    as the replacement of version 1) rather than leave it unused."""
    name = "killed.recovery.test"
    certonly(ca, tmp_path, name)
    live = tmp_path / "etc" / "live" / name
    made = (live / "cert.pem").lstat().st_mtime
    got = acmekit(ca, tmp_path, *RENEW, "--force-renewal")
    assert got.returncode == 0, got.stderr
    issued = leaf(tmp_path, name)
    for kind in KINDS:  # what the killed run left: version 2 whole, the links at 1
        (live / f"{kind}.pem").unlink()
        (live / f"{kind}.pem").symlink_to(f"../../archive/{name}/{kind}1.pem")
        os.utime(live / f"{kind}.pem", (made, made), follow_symlinks=False)
    assert leaf(tmp_path, name).serial_number != issued.serial_number

    quiet = acmekit(ca, tmp_path, *RENEW)
    assert quiet.returncode == 0, quiet.stderr
    assert links(tmp_path, name) == {f"../../archive/{name}/{kind}2.pem" for kind in KINDS}
    assert leaf(tmp_path, name).serial_number == issued.serial_number
    assert f"{name}: not due for renewal yet" in quiet.stdout
    assert f"lineage {name}: live links repointed at version 2" in quiet.stderr


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

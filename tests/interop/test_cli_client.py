"""The `acmekit` client commands as a user runs them: subprocesses against `acmekit server`
(a real process) with a loopback DNS server that answers every name with 127.0.0.1."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509

from acmekit_testkit.acmekit_server import CaProcess, running_ca_process
from acmekit_testkit.challtestsrv import ChalltestsrvHandle, running_challtestsrv
from acmekit_testkit.cli import certbot_dirs, run_acmekit, serving_webroot
from acmekit_testkit.pebble import write_listener_certs
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

Ca = CaProcess[ChalltestsrvHandle]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ca]:
    workdir = tmp_path_factory.mktemp("cli-ca")
    with running_challtestsrv(workdir) as dns, running_ca_process(workdir, dns) as ca:
        yield ca


@pytest.fixture
def webserver(ca: Ca, tmp_path: Path) -> Iterator[Path]:
    """A plain web server on the CA's http-01 port serving a webroot."""
    with serving_webroot(tmp_path / "www", ca.http01_port) as root:
        yield root


def acmekit(ca: Ca, *args: str) -> subprocess.CompletedProcess[str]:
    return run_acmekit(ca.server.root_path, *args)


def certonly(ca: Ca, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return acmekit(
        ca, "certonly", "-n", "--agree-tos", "-m", "ops@cli.test",
        "--server", ca.server.directory_url, *certbot_dirs(tmp), *args,
    )  # fmt: skip


def standalone(ca: Ca) -> list[str]:
    return ["--standalone", "--http-01-port", str(ca.http01_port), "--http-01-address", "127.0.0.1"]


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def test_certonly_standalone_writes_certbots_layout(ca: Ca, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    hooks = ["--pre-hook", f"echo pre >> {log}", "--deploy-hook", f"echo deploy >> {log}",
             "--post-hook", f'echo "post $RENEWED_DOMAINS" >> {log}']  # fmt: skip
    names = ["-d", "a.cli.test", "-d", "www.a.cli.test"]
    _ok(certonly(ca, tmp_path, *standalone(ca), *names, *hooks))
    assert log.read_text().splitlines() == ["pre", "deploy", "post a.cli.test www.a.cli.test"]
    live = tmp_path / "etc" / "live" / "a.cli.test"
    cert = openssl_verify(ca.server.root_path, live / "fullchain.pem", tmp_path)
    assert dns_names(cert) == ["a.cli.test", "www.a.cli.test"]
    for kind in ("cert", "chain", "fullchain", "privkey"):
        assert os.readlink(live / f"{kind}.pem") == f"../../archive/a.cli.test/{kind}1.pem"
    privkey = tmp_path / "etc" / "archive" / "a.cli.test" / "privkey1.pem"
    assert stat.S_IMODE(privkey.stat().st_mode) == 0o600
    conf = (tmp_path / "etc" / "renewal" / "a.cli.test.conf").read_text()
    assert "authenticator = standalone" in conf and f"http01_port = {ca.http01_port}" in conf
    accounts = list((tmp_path / "etc" / "accounts").glob("*/directory/*/regr.json"))
    assert len(accounts) == 1
    # certbot's modes: every account folder 0700, the account key 0400.
    account = accounts[0].parent
    for folder in (account, *account.parents[:3]):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((account / "private_key.json").stat().st_mode) == 0o400
    for kind in ("pre", "deploy", "post"):
        assert (tmp_path / "etc" / "renewal-hooks" / kind).is_dir()
    # The same names again: kept, not reissued (certbot's --keep-until-expiring).
    again = certonly(ca, tmp_path, *standalone(ca), *names, *hooks)
    _ok(again)
    assert "not yet due" in again.stdout
    assert len(log.read_text().splitlines()) == 3  # nothing requested, no hook run: certbot's way
    assert sorted(p.name for p in (tmp_path / "etc" / "archive" / "a.cli.test").iterdir()) == [
        "cert1.pem", "chain1.pem", "fullchain1.pem", "privkey1.pem",
    ]  # fmt: skip


def test_certonly_webroot_and_rsa(ca: Ca, tmp_path: Path, webserver: Path) -> None:
    other = tmp_path / "other-root"
    other.symlink_to(webserver)  # one web server answers for both roots
    _ok(
        certonly(
            ca, tmp_path, "--webroot", "-w", str(webserver), "-d", "web.cli.test",
            "-w", str(other), "-d", "b.web.cli.test", "--key-type", "rsa", "--rsa-key-size", "2048",
        )
    )  # fmt: skip
    live = tmp_path / "etc" / "live" / "web.cli.test"
    cert = openssl_verify(ca.server.root_path, live / "fullchain.pem", tmp_path)
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    conf = (tmp_path / "etc" / "renewal" / "web.cli.test.conf").read_text()
    assert f"webroot_path = {webserver}, {other}" in conf
    # Each -d takes the -w given before it, as certbot pairs them.
    assert f"[[webroot_map]]\nweb.cli.test = {webserver}\nb.web.cli.test = {other}\n" in conf


def test_failure_is_one_line_per_name_and_nonzero(ca: Ca, tmp_path: Path) -> None:
    wrong_port = ["--standalone", "--http-01-port", str(free_port()), "--http-01-address",
                  "127.0.0.1"]  # fmt: skip
    result = certonly(ca, tmp_path, *wrong_port, "-d", "x.cli.test", "-d", "y.cli.test")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("acmekit: ")]
    assert any(ln.startswith("acmekit: x.cli.test: ") for ln in lines), result.stderr
    assert any(ln.startswith("acmekit: y.cli.test: ") for ln in lines), result.stderr
    assert not (tmp_path / "etc" / "renewal" / "x.cli.test.conf").exists()


def test_renew_force_creates_version_two_and_runs_hooks(ca: Ca, tmp_path: Path) -> None:
    _ok(certonly(ca, tmp_path, *standalone(ca), "-d", "renew.cli.test"))
    live = tmp_path / "etc" / "live" / "renew.cli.test"
    first = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    log = tmp_path / "hooks.log"
    not_due = acmekit(ca, "renew", "--no-random-sleep-on-renew", *certbot_dirs(tmp_path),
                      "--pre-hook", f"echo pre >> {log}")  # fmt: skip
    _ok(not_due)
    assert "not due" in not_due.stdout and not log.exists()  # nothing attempted, no hooks
    result = acmekit(
        ca, "renew", "--force-renewal", "--no-random-sleep-on-renew", *certbot_dirs(tmp_path),
        "--pre-hook", f"echo pre >> {log}",
        "--deploy-hook", f'echo "deploy $RENEWED_LINEAGE $RENEWED_DOMAINS" >> {log}',
        "--post-hook", f'echo "post $FAILED_DOMAINS" >> {log}',
    )  # fmt: skip
    _ok(result)
    for kind in ("cert", "chain", "fullchain", "privkey"):
        assert os.readlink(live / f"{kind}.pem") == f"../../archive/renew.cli.test/{kind}2.pem"
    second = openssl_verify(ca.server.root_path, live / "fullchain.pem", tmp_path)
    assert second.serial_number != first.serial_number
    assert log.read_text().splitlines() == ["pre", f"deploy {live} renew.cli.test", "post "]


def test_renew_uses_and_saves_certonly_flags_over_the_conf(ca: Ca, tmp_path: Path) -> None:
    _ok(certonly(ca, tmp_path, *standalone(ca), "-d", "moved.cli.test"))
    conf = tmp_path / "etc" / "renewal" / "moved.cli.test.conf"
    good = f"http01_port = {ca.http01_port}"
    conf.write_text(conf.read_text().replace(good, f"http01_port = {free_port()}"))
    result = acmekit(ca, "renew", "--force-renewal", "--no-random-sleep-on-renew",
                     "--http-01-port", str(ca.http01_port), *certbot_dirs(tmp_path))  # fmt: skip
    _ok(result)
    assert "renewed" in result.stdout
    assert (tmp_path / "etc" / "archive" / "moved.cli.test" / "cert2.pem").exists()
    assert good in conf.read_text()  # saved for the next renewal, as certbot saves it


def test_renew_dry_run_saves_nothing_and_skips_deploy_hook(ca: Ca, tmp_path: Path) -> None:
    _ok(certonly(ca, tmp_path, *standalone(ca), "-d", "dry.cli.test"))
    log = tmp_path / "hooks.log"
    result = acmekit(
        ca, "renew", "--dry-run", "--no-random-sleep-on-renew", *certbot_dirs(tmp_path),
        "--pre-hook", f"echo pre >> {log}", "--deploy-hook", f"echo deploy >> {log}",
    )  # fmt: skip
    _ok(result)
    assert "simulated" in result.stdout
    assert log.read_text().splitlines() == ["pre"]
    archive = tmp_path / "etc" / "archive" / "dry.cli.test"
    assert sorted(p.name for p in archive.iterdir())[0] == "cert1.pem"
    assert not (archive / "cert2.pem").exists()


def test_certificates_json_revoke_and_delete(ca: Ca, tmp_path: Path) -> None:
    _ok(certonly(ca, tmp_path, *standalone(ca), "-d", "list.cli.test"))
    listed = acmekit(ca, "certificates", "--json", *certbot_dirs(tmp_path))
    _ok(listed)
    report = json.loads(listed.stdout)
    assert report["errors"] == []
    (entry,) = report["certificates"]
    cert = x509.load_pem_x509_certificate(Path(entry["cert_path"]).read_bytes())
    assert entry["name"] == "list.cli.test" and entry["domains"] == ["list.cli.test"]
    assert entry["serial"] == f"{cert.serial_number:x}" and entry["key_type"] == "ECDSA"
    assert entry["valid"] is True and 80 <= entry["days_left"] <= 90 and entry["version"] == 1
    assert entry["server"] == ca.server.directory_url

    revoked = acmekit(ca, "revoke", "--cert-name", "list.cli.test", "--reason", "superseded",
                      "--no-delete-after-revoke", *certbot_dirs(tmp_path))  # fmt: skip
    _ok(revoked)
    assert (tmp_path / "etc" / "renewal" / "list.cli.test.conf").exists()
    twice = acmekit(ca, "revoke", "--cert-name", "list.cli.test", "--no-delete-after-revoke",
                    *certbot_dirs(tmp_path))  # fmt: skip
    assert twice.returncode != 0 and "alreadyRevoked" in twice.stderr

    _ok(acmekit(ca, "delete", "--cert-name", "list.cli.test", *certbot_dirs(tmp_path)))
    assert json.loads(acmekit(ca, "certificates", "--json", *certbot_dirs(tmp_path)).stdout) == {
        "certificates": [], "errors": [],
    }  # fmt: skip
    assert not (tmp_path / "etc" / "archive" / "list.cli.test").exists()


def test_account_commands(ca: Ca, tmp_path: Path) -> None:
    server = ["--server", ca.server.directory_url, *certbot_dirs(tmp_path)]
    _ok(acmekit(ca, "register", "--agree-tos", "-m", "one@cli.test", *server))
    dup = acmekit(ca, "register", "--agree-tos", "-m", "one@cli.test", *server)
    assert dup.returncode != 0 and "existing account" in dup.stderr
    _ok(acmekit(ca, "update_account", "-m", "two@cli.test", *server))
    shown = acmekit(ca, "show_account", *server)
    _ok(shown)
    assert "Email contact: two@cli.test" in shown.stdout
    _ok(acmekit(ca, "unregister", *server))
    assert list((tmp_path / "etc" / "accounts").glob("*/directory/*")) == []


def test_check_reports_validity_and_verification(ca: Ca, tmp_path: Path) -> None:
    host = ca.server.base_url.removeprefix("https://")
    good = acmekit(ca, "check", host, "--servername", "localhost",
                   "--ca-bundle", str(ca.server.root_path))  # fmt: skip
    _ok(good)
    assert "notAfter: " in good.stdout and "verify: ok" in good.stdout
    untrusted, _, _ = write_listener_certs(tmp_path)  # a root that signed nothing here
    bad = acmekit(ca, "check", host, "--servername", "localhost", "--ca-bundle", str(untrusted))
    assert bad.returncode == 1 and "verify: failed" in bad.stdout and "days left: " in bad.stdout


def test_concurrent_certonly_for_different_and_same_names(
    ca: Ca, tmp_path: Path, webserver: Path
) -> None:
    _ok(acmekit(ca, "register", "--agree-tos", "-m", "c@cli.test",
                "--server", ca.server.directory_url, *certbot_dirs(tmp_path)))  # fmt: skip
    web = ["--webroot", "-w", str(webserver)]
    jobs = [["-d", "one.cli.test"], ["-d", "two.cli.test"], ["-d", "same.cli.test"],
            ["-d", "same.cli.test"]]  # fmt: skip
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda j: certonly(ca, tmp_path, *web, *j), jobs))
    for result in results:
        _ok(result)
    etc = tmp_path / "etc"
    assert sorted(p.name for p in (etc / "renewal").iterdir()) == [
        "one.cli.test.conf", "same.cli.test.conf", "two.cli.test.conf",
    ]  # fmt: skip
    # The second run for the same name waited for the first, looked again and kept it.
    assert not (etc / "archive" / "same.cli.test" / "cert2.pem").exists()
    assert sum("not yet due" in r.stdout for r in results) == 1


def test_revoke_trusts_the_roots_the_lineage_was_obtained_with(ca: Ca, tmp_path: Path) -> None:
    """`--ca-bundle` given to certonly alone, then `revoke --cert-name` with no roots on
    its command line nor in REQUESTS_CA_BUNDLE: the renewal conf's `ca_bundle` is used,
    as `renew` uses it."""
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "acmekit", *args, *certbot_dirs(tmp_path)]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180)

    _ok(run("certonly", "-n", "--agree-tos", "-m", "ops@cli.test",
            "--server", ca.server.directory_url, "--ca-bundle", str(ca.server.root_path),
            *standalone(ca), "-d", "revoke-bundle.cli.test"))  # fmt: skip
    revoked = run("revoke", "--cert-name", "revoke-bundle.cli.test", "-n")
    _ok(revoked)
    assert not (tmp_path / "etc" / "renewal" / "revoke-bundle.cli.test.conf").exists()

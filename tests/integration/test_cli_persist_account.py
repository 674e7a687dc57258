"""dns-persist-01 and dns-account-01 from the command line, against `acmekit server` and
`acmekit dns` as real processes.

`acmekit persist-record` prints the record for the stored account before any order; once
it stands in DNS, `certonly --preferred-challenges dns-persist-01` gets a wildcard and its
base name with no DNS plugin at all, and `renew` renews the lineage with no hook.
dns-account-01 goes through `--dns-hook`, the hook publishing at the account's label.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit_testkit.acmekit_server import CaProcess, running_acmekit_server
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

Ca = CaProcess[DnsServerHandle]
SETTINGS = {
    "dns_persist_01": True,
    "dns_account_01": True,
    "caa_identities": ["ca.cli-persist.test"],
}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ca]:
    workdir = tmp_path_factory.mktemp("cli-persist")
    http01, tlsalpn01 = free_port(), free_port()
    with (
        dns_server_process(workdir) as dns,
        running_acmekit_server(
            workdir,
            dns_port=dns.dns_port,
            http01_port=http01,
            tlsalpn01_port=tlsalpn01,
            settings=SETTINGS,
        ) as server,
    ):
        yield CaProcess(server, dns, http01, tlsalpn01)


def acmekit(ca: Ca, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_acmekit(ca.server.root_path, *args, *certbot_dirs(tmp))


def _zone_line(stdout: str) -> tuple[str, str]:
    """(owner, value) of the one zone-file line printed, its strings joined."""
    (line,) = [x for x in stdout.splitlines() if " IN TXT " in x]
    owner = line.split()[0].rstrip(".")
    return owner, "".join(re.findall(r'"([^"]*)"', line))


def test_persist_record_then_certonly_and_renew_without_dns_access(ca: Ca, tmp_path: Path) -> None:
    server = ("--server", ca.server.directory_url)
    reg = acmekit(ca, tmp_path, "register", "-n", "--agree-tos", "-m", "ops@p.test", *server)
    assert reg.returncode == 0, reg.stderr
    printed = acmekit(
        ca, tmp_path, "persist-record", *server, "-d", "*.cli.persist.test",
        "--persist-until", "2099-01-01",
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    owner, value = _zone_line(printed.stdout)
    assert owner == "_validation-persist.cli.persist.test"
    assert value.startswith("ca.cli-persist.test; accounturi=https://")
    assert "; policy=wildcard; persistUntil=4070908800" in value
    ca.dns.set_txt_sync(owner, value)

    # No DNS plugin: the standing record is all the CA needs.
    got = acmekit(
        ca, tmp_path, "certonly", "-n", *server, "--standalone",
        "--http-01-address", "127.0.0.1", "--http-01-port", str(free_port()),
        "--preferred-challenges", "dns-persist-01",
        "-d", "*.cli.persist.test", "-d", "cli.persist.test",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr + got.stdout
    live = tmp_path / "etc" / "live" / "cli.persist.test"
    leaf = openssl_verify(ca.server.root_path, live / "fullchain.pem", tmp_path)
    assert dns_names(leaf) == ["*.cli.persist.test", "cli.persist.test"]
    conf = (tmp_path / "etc" / "renewal" / "cli.persist.test.conf").read_text()
    assert "dns-persist-01" in conf

    renewed = acmekit(
        ca, tmp_path, "renew", "--force-renewal", "--no-random-sleep-on-renew"
    )  # fmt: skip
    assert renewed.returncode == 0, renewed.stderr + renewed.stdout
    assert (tmp_path / "etc" / "archive" / "cli.persist.test" / "cert2.pem").exists()


def test_persist_record_without_an_account_is_a_clear_error(ca: Ca, tmp_path: Path) -> None:
    got = acmekit(
        ca, tmp_path, "persist-record", "--server", ca.server.directory_url, "-d", "x.test"
    )
    assert got.returncode != 0
    assert "Traceback" not in got.stderr


def test_dns_account_01_through_the_hook(ca: Ca, tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    log = tmp_path / "hook.log"
    hook.write_text(
        "#!/bin/sh\n"
        f'echo "$1 $2" >> {log}\n'
        'case "$1" in\n'
        f'present) curl -sf -X POST -d \'{{"host":"\'$2\'","value":"\'$3\'"}}\' '
        f"{ca.dns.api_url}/set-txt;;\n"
        f"cleanup) curl -sf -X POST -d '{{\"host\":\"'$2'\"}}' {ca.dns.api_url}/clear-txt;;\n"
        "esac\n"
    )
    hook.chmod(0o755)
    got = acmekit(
        ca, tmp_path, "certonly", "-n", "--agree-tos", "-m", "ops@acct.test",
        "--server", ca.server.directory_url, "--dns-hook", str(hook),
        "--dns-resolver", ca.dns.resolver, "--dns-propagation-seconds", "30",
        "--preferred-challenges", "dns-account-01",
        "-d", "acct.cli.test", "-d", "*.acct.cli.test",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr + got.stdout
    live = tmp_path / "etc" / "live" / "acct.cli.test"
    leaf = openssl_verify(ca.server.root_path, live / "fullchain.pem", tmp_path)
    assert dns_names(leaf) == ["*.acct.cli.test", "acct.cli.test"]
    names = {line.split()[1] for line in log.read_text().splitlines()}
    assert len(names) == 1
    assert re.fullmatch(r"_[a-z2-7]{16}\._acme-challenge\.acct\.cli\.test\.?", names.pop())


def test_dns_account_01_through_the_manual_hooks(ca: Ca, tmp_path: Path) -> None:
    # certbot's manual hooks, with CERTBOT_RECORD_NAME naming the account's TXT owner.
    auth = tmp_path / "auth.sh"
    auth.write_text(
        "#!/bin/sh\n"
        'body=\'{"host":"\'"$CERTBOT_RECORD_NAME"\'","value":"\'"$CERTBOT_VALIDATION"\'"}\'\n'
        f'curl -sf -X POST -d "$body" {ca.dns.api_url}/set-txt\n'
    )
    auth.chmod(0o755)
    got = acmekit(
        ca, tmp_path, "certonly", "-n", "--agree-tos", "-m", "ops@manual.test",
        "--server", ca.server.directory_url, "--manual", "--manual-auth-hook", str(auth),
        "--preferred-challenges", "dns-account-01", "-d", "manual.acct.test",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr + got.stdout
    leaf = openssl_verify(
        ca.server.root_path, tmp_path / "etc" / "live" / "manual.acct.test" / "fullchain.pem",
        tmp_path,
    )  # fmt: skip
    assert dns_names(leaf) == ["manual.acct.test"]

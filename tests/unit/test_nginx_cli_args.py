"""certbot's command line for the nginx plugin: flags with no command mean `run`, and
`--nginx` names nginx as authenticator and installer in the renewal conf."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from acmekit.certbot.renewalparams import Authenticator, RenewalParams, params_from_conf
from acmekit.cli.main import cli, with_default_command


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--nginx", "-d", "a.test"], ["run", "--nginx", "-d", "a.test"]),
        (["-v", "--nginx"], ["-v", "run", "--nginx"]),
        (["certonly", "--nginx"], ["certonly", "--nginx"]),
        (["--nginx", "rollback"], ["rollback", "--nginx"]),
        (
            ["-n", "--nginx", "certonly", "-d", "a.test"],
            ["certonly", "-n", "--nginx", "-d", "a.test"],
        ),
        (["--cert-name", "install", "--nginx"], ["run", "--cert-name", "install", "--nginx"]),
        (["--help"], ["--help"]),
        (["--version"], ["--version"]),
        # certbot's -v anywhere: `certbot renew -v`, unless it is an option's value.
        (["renew", "-v", "-n"], ["-v", "renew", "-n"]),
        (
            ["certonly", "-vv", "--nginx", "-d", "a.test"],
            ["-vv", "certonly", "--nginx", "-d", "a.test"],
        ),
        (["renew", "--pre-hook", "-v"], ["renew", "--pre-hook", "-v"]),
        ([], []),
    ],
)
def test_flags_without_a_command_mean_run_and_a_command_may_follow_flags(
    argv: list[str], expected: list[str]
) -> None:
    assert with_default_command(argv) == expected


def test_renewal_conf_keeps_the_nginx_settings() -> None:
    params = RenewalParams(
        authenticator=Authenticator.NGINX,
        server="https://ca.test/directory",
        http01_port=8080,
        installer="nginx",
        nginx_server_root="/srv/nginx",
        nginx_ctl="/usr/sbin/nginx",
        nginx_sleep_seconds=0.5,
    )
    section = params.to_section()
    assert section["authenticator"] == "nginx"
    assert section["installer"] == "nginx"
    assert section["nginx_server_root"] == "/srv/nginx"
    assert section["nginx_sleep_seconds"] == "0.5"
    assert params_from_conf({"renewalparams": section}) == params


def test_run_needs_an_installer_and_install_knows_only_nginx(tmp_path: Path) -> None:
    runner = CliRunner()
    dirs = ["--config-dir", str(tmp_path), "--work-dir", str(tmp_path),
            "--logs-dir", str(tmp_path)]  # fmt: skip
    result = runner.invoke(
        cli, ["run", "--standalone", "--server", "https://ca.test/d", "-d", "a.test", *dirs]
    )
    assert result.exit_code == click.UsageError.exit_code
    assert "give --nginx or -i nginx" in result.output
    result = runner.invoke(cli, ["install", "--cert-name", "a.test", "-i", "apache", *dirs])
    assert result.exit_code == click.UsageError.exit_code
    assert "the one installer is nginx" in result.output


def test_a_server_root_without_nginx_conf_is_named_and_left_alone(tmp_path: Path) -> None:
    dirs = ["--config-dir", str(tmp_path / "etc"), "--work-dir", str(tmp_path / "work"),
            "--logs-dir", str(tmp_path / "logs")]  # fmt: skip
    root = tmp_path / "no-nginx"
    result = CliRunner().invoke(cli, ["rollback", "--nginx-server-root", str(root), *dirs])
    assert result.exit_code == 1
    assert f"no {root / 'nginx.conf'} (see --nginx-server-root)" in result.output
    assert not root.exists()

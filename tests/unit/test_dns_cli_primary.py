"""`acmekit dns` as a hidden primary: its options are checked before anything binds."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import dns.name
from click.testing import CliRunner

from acmekit.cli.dns import dns as dns_command
from acmekit.dns.service import DnsConfig, DnsService

SECRET = base64.b64encode(b"s" * 32).decode()
BASE = ["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--zone", "x.test"]


def test_allow_transfer_names_a_key_given_with_tsig_key() -> None:
    result = CliRunner().invoke(dns_command, [*BASE, "--allow-transfer", "xfr"])
    assert result.exit_code == 2 and "--allow-transfer" in result.output
    result = CliRunner().invoke(
        dns_command, [*BASE, "--tsig-key", f"other:{SECRET}", "--allow-transfer", "xfr"]
    )
    assert result.exit_code == 2 and "xfr" in result.output


def test_notify_takes_host_and_port() -> None:
    result = CliRunner().invoke(dns_command, [*BASE, "--notify", "127.0.0.1"])
    assert result.exit_code == 2 and "--notify" in result.output


def test_the_service_wires_transfers_and_notify() -> None:
    service = DnsService(
        DnsConfig(
            zones=("x.test",),
            tsig_keys=(f"xfr:{SECRET}",),
            allow_transfer=("xfr",),
            notify=("127.0.0.1:5301", "[::1]:5302"),
        )
    )
    assert service.handler.allow_transfer == {dns.name.from_text("xfr")}
    assert [s.label for s in service.notifier.secondaries] == ["127.0.0.1:5301", "[::1]:5302"]
    assert service.notifier.key is not None and service.notifier.key.name.to_text() == "xfr."


def test_the_primary_settings_from_a_toml_file(tmp_path: Path) -> None:
    conf = tmp_path / "dns.toml"
    conf.write_text(
        'zone = ["x.test"]\n'
        f'tsig-key = ["xfr:{SECRET}"]\n'
        'allow-transfer = ["nokey"]\n'
        'notify = ["127.0.0.1:5301"]\n'
    )
    result = CliRunner().invoke(dns_command, ["--config", str(conf), *BASE[:4]])
    assert result.exit_code == 2 and "nokey" in result.output  # the file's key list was read
    conf.write_text('allow_transfer = ["xfr"]\nnot-a-setting = 1\n')
    result = CliRunner().invoke(dns_command, ["--config", str(conf), *BASE])
    assert result.exit_code == 2 and "not-a-setting" in result.output


def test_a_fresh_store_starts_its_serial_at_the_time_a_restored_one_continues(
    tmp_path: Path,
) -> None:
    before = int(time.time())
    fresh = DnsService(DnsConfig(zones=("x.test",), state=tmp_path / "state.json"))
    assert before <= fresh.store.serial <= int(time.time())
    fresh.store.serial = 41
    fresh.save()
    restored = DnsService(DnsConfig(zones=("x.test",), state=tmp_path / "state.json"))
    assert restored.store.serial == 41

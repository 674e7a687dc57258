"""`acmekit dns` options, the registry's credentials and the state file, without sockets."""

from __future__ import annotations

import json
from pathlib import Path

import click
import dns.name
import pytest
from click.testing import CliRunner

from acmekit.cli.dns import dns as dns_command
from acmekit.cli.dns import parse_hostport
from acmekit.dns.registry import Registry
from acmekit.dns.service import DnsConfig, DnsService, is_loopback
from acmekit.dns.state import load_state, save_state


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8053", ("127.0.0.1", 8053)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:53", ("localhost", 53)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["8053", ":8053", "host:", "host:99999", "host:x"])
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_hostport(text)


def test_api_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(ValueError, match="token"):
        DnsService(DnsConfig(api_host="0.0.0.0"))
    assert DnsService(DnsConfig(api_host="0.0.0.0", api_token="t")).config.api_token == "t"
    result = CliRunner().invoke(dns_command, ["--api", "0.0.0.0:0", "--listen", "127.0.0.1:0"])
    assert result.exit_code == 2 and "token" in result.output


def test_bad_tsig_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="TSIG"):
        DnsService(DnsConfig(tsig_keys=("name:not base64!",)))


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert not is_loopback("example.test")


def test_delegation_domain_becomes_a_zone_when_zones_are_named() -> None:
    service = DnsService(DnsConfig(zones=("x.test",), delegation_domain="auth.example.test"))
    assert service.store.is_apex(dns.name.from_text("auth.example.test."))
    assert service.store.is_apex(dns.name.from_text("x.test."))


def test_registry_authenticates_only_the_right_password() -> None:
    registry = Registry(dns.name.from_text("auth.test."))
    reg = registry.register("user", "pw" * 20, "sub-1", salt="salt")
    assert reg.fulldomain == "sub-1.auth.test"
    assert registry.authenticate("user", "pw" * 20) == reg
    assert registry.authenticate("user", "wrong") is None
    assert registry.authenticate("nobody", "pw" * 20) is None
    with pytest.raises(ValueError):
        registry.register("user", "x", "sub-2", salt="s")
    with pytest.raises(ValueError):
        registry.register("other", "x", "Bad_Sub", salt="s")
    copy = Registry.restore(registry.domain, registry.snapshot())
    assert copy.authenticate("user", "pw" * 20) == reg
    assert "pw" * 20 not in json.dumps(registry.snapshot())


def test_state_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert load_state(path) is None
    save_state(path, {"store": {"records": {}}})
    save_state(path, {"store": {"records": {"a.test.": {}}}})
    doc = load_state(path)
    assert doc is not None and doc["store"]["records"] == {"a.test.": {}}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError):
        load_state(path)

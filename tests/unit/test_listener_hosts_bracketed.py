"""`listener_hosts` may name an IPv6 address as a URL or a Host header does, in brackets
(RFC 3986 §3.2.2): the listener's certificate has always taken `[::1]` for the address
::1 (its IP SAN), and the listener answered `Host: [::1]:PORT` for it. Checked as a DNS
name, such a setting was refused at start after an upgrade, a server that had run on it
no longer starting. Brackets hold an IPv6 address only: `[localhost]` and
`[127.0.0.1]` are no host (RFC 3986 §3.2.2's IP-literal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.server.config import load_config


def _config(tmp_path: Path, hosts: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(f"listener_hosts = {hosts}\n", encoding="utf-8")
    return path


def test_a_bracketed_ipv6_address_is_read_as_the_address(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, '["[::1]", "[2001:DB8::1]", "localhost"]'), {})
    assert config.listener_hosts == ("::1", "2001:db8::1", "localhost")


@pytest.mark.parametrize("host", ["[localhost]", "[127.0.0.1]", "[::1", "::1]", "[]"])
def test_brackets_around_anything_but_an_ipv6_address_are_refused(
    tmp_path: Path, host: str
) -> None:
    with pytest.raises(ValueError, match=r"^listener_hosts: "):
        load_config(_config(tmp_path, f'["{host}"]'), {})

"""Which server block nginx picks for a name on a port (nginx's server_names rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.certbot.nginx.parser import NginxConfig
from acmekit.certbot.nginx.vhosts import (
    MatchKind,
    default_block,
    parse_listen,
    select,
    server_blocks,
)

CONF = """
http {
    server { listen 8080; server_name first.test; }
    server { listen 8080; server_name exact.test *.example.test; }
    server { listen 8080; server_name *.www.example.test www.example.*; }
    server { listen 8080; server_name .dot.test; }
    server { listen 8080 default_server; server_name _; }
    server { listen 8080; server_name ~^(?<user>.+)\\.users\\.test$ ~^api\\d+\\.test$; }
    server { listen 8080; server_name ~^(.+)\\.users\\.test$; }
    server { listen 127.0.0.1:8443 ssl; server_name exact.test; }
    server { server_name implied.test; }
}
"""


@pytest.fixture
def blocks(tmp_path: Path) -> list:
    (tmp_path / "nginx.conf").write_text(CONF)
    return server_blocks(NginxConfig.load(tmp_path / "nginx.conf"))


def _pick(blocks: list, host: str, port: int = 8080) -> tuple[str, MatchKind]:
    match = select(blocks, host, port)
    assert match is not None
    return match.block.names[0], match.kind


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("exact.test", ("exact.test", MatchKind.EXACT)),
        ("EXACT.Test.", ("exact.test", MatchKind.EXACT)),  # no case, no trailing dot
        ("a.example.test", ("exact.test", MatchKind.LEADING_WILDCARD)),
        # the longest leading wildcard wins over a shorter one and a trailing one
        ("x.www.example.test", ("*.www.example.test", MatchKind.LEADING_WILDCARD)),
        ("www.example.org", ("*.www.example.test", MatchKind.TRAILING_WILDCARD)),
        ("dot.test", (".dot.test", MatchKind.LEADING_WILDCARD)),
        ("a.b.dot.test", (".dot.test", MatchKind.LEADING_WILDCARD)),
        # the first regex in configuration order, with PCRE's named groups
        ("bob.users.test", ("~^(?<user>.+)\\.users\\.test$", MatchKind.REGEX)),
        ("api7.test", ("~^(?<user>.+)\\.users\\.test$", MatchKind.REGEX)),
        ("nothing.test", ("_", MatchKind.DEFAULT)),
        ("example.test", ("_", MatchKind.DEFAULT)),  # *.example.test needs a label
    ],
)
def test_nginx_order_of_matches(blocks: list, host: str, expected: tuple) -> None:
    assert _pick(blocks, host) == expected


def test_ports_are_separate_and_a_block_without_listen_is_on_80(blocks: list) -> None:
    assert _pick(blocks, "exact.test", 8443)[0] == "exact.test"
    assert select(blocks, "exact.test", 8443).block.listens[0].ssl  # type: ignore[union-attr]
    assert _pick(blocks, "other.test", 8443) == ("exact.test", MatchKind.DEFAULT)
    assert _pick(blocks, "implied.test", 80) == ("implied.test", MatchKind.EXACT)
    assert select(blocks, "exact.test", 9999) is None


def test_without_default_server_the_first_block_on_the_port_is_the_default(
    tmp_path: Path,
) -> None:
    (tmp_path / "nginx.conf").write_text(
        "http { server { listen 81; server_name a.test; } server { listen 81; } }"
    )
    found = server_blocks(NginxConfig.load(tmp_path / "nginx.conf"))
    assert default_block(found, 81) is found[0]
    assert _pick(found, "zzz.test", 81) == ("a.test", MatchKind.DEFAULT)


def test_listen_forms(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text(
        "http { server {\n"
        "listen 80; listen 127.0.0.1:8080 default_server; listen [::]:443 ssl http2;\n"
        "listen [::1]; listen localhost; listen *:81 default; listen unix:/run/x.sock;\n"
        "} }"
    )
    block = server_blocks(NginxConfig.load(tmp_path / "nginx.conf"))[0]
    got = [(lis.address, lis.port, lis.ssl, lis.default_server) for lis in block.listens]
    assert got == [
        ("*", 80, False, False),
        ("127.0.0.1", 8080, False, True),
        ("[::]", 443, True, False),
        ("[::1]", 80, False, False),
        ("localhost", 80, False, False),
        ("*", 81, False, True),
    ]
    assert parse_listen(block.directive.block[-1]) is None  # type: ignore[index]


def test_server_blocks_inside_includes_and_names_from_included_snippets(
    tmp_path: Path,
) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "nginx.conf").write_text("http { include conf.d/*.conf; }")
    (tmp_path / "conf.d" / "site.conf").write_text("server { include names.inc; listen 8081; }\n")
    (tmp_path / "names.inc").write_text("server_name inc.test;\n")
    found = server_blocks(NginxConfig.load(tmp_path / "nginx.conf"))
    assert _pick(found, "inc.test", 8081) == ("inc.test", MatchKind.EXACT)
    assert found[0].directive.file.path == tmp_path / "conf.d" / "site.conf"

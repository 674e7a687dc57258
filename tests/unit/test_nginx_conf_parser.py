"""The nginx configuration parser: tokens as nginx reads them, includes, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.certbot.nginx.parser import (
    ConfFile,
    NginxConfig,
    NginxParseError,
    Splice,
    apply_splices,
    dump_directive,
    parse,
    quote,
    tokenize,
    walk,
)

TRICKY = """# a comment with { braces } and ; semicolons
user  www-data;   # trailing comment
events { worker_connections 64; }
http {
    log_format main '$remote_addr "$request" ${status}x';
    map $host $site {
        default "-";
        "~^(?<n>[a-z]+)\\.test$" $n;
    }
    server {
        listen 127.0.0.1:8080 default_server;
        server_name a.test "b.test" 'c.test';
        location / { return 200 "it's \\"quoted\\"\\n"; }
        location ~ \\.php$ { return 404; }
        location /x{ return 204; }
    }
}
"""


def _parse(text: str, name: str = "nginx.conf") -> list:
    conf = ConfFile(Path(name), text)
    conf.directives = parse(text, conf)
    return conf.directives


def test_words_quotes_escapes_and_variables_as_nginx_reads_them() -> None:
    directives = _parse(TRICKY)
    found = {(d.name, tuple(d.args)) for d in walk(directives)}
    assert ("user", ("www-data",)) in found
    assert ("log_format", ("main", '$remote_addr "$request" ${status}x')) in found
    assert ("server_name", ("a.test", "b.test", "c.test")) in found
    assert ("return", ("200", 'it\'s "quoted"\n')) in found
    assert ("location", ("~", "\\.php$")) in found  # unknown escapes stay as written
    assert ("location", ("/x",)) in found  # `{` ends a word unless it follows `$`
    assert ('"~^(?<n>[a-z]+)\\.test$"'.strip('"'), ("$n",)) in found
    assert not any(d.name.startswith("#") for d in walk(directives))


def test_offsets_cover_each_directive_exactly() -> None:
    directives = _parse(TRICKY)
    server = next(d for d in walk(directives) if d.name == "server")
    text = TRICKY[server.start : server.end]
    assert text.startswith("server {") and text.endswith("}")
    assert TRICKY[server.body_end] == "}"
    listen = server.block[0]
    assert TRICKY[listen.start : listen.end] == "listen 127.0.0.1:8080 default_server;"
    assert listen.line == 11
    assert listen.indent() == " " * 8
    assert server.body_indent() == " " * 8


def test_no_edit_round_trips_byte_for_byte() -> None:
    assert apply_splices(TRICKY, []) == TRICKY
    directives = _parse(TRICKY)
    listen = next(d for d in walk(directives) if d.name == "listen")
    edited = apply_splices(TRICKY, [Splice(Path("x"), listen.start, listen.end, "listen 9;")])
    assert edited == TRICKY.replace("listen 127.0.0.1:8080 default_server;", "listen 9;")


def test_overlapping_splices_are_refused() -> None:
    with pytest.raises(ValueError, match="overlapping"):
        apply_splices("abcdef", [Splice(Path("x"), 0, 3, ""), Splice(Path("x"), 2, 4, "")])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http { server { listen 80; }", "no closing"),
        ("http { }\n}", "unexpected '}'"),
        ('server_name "a.test;', "unterminated quoted string"),
        ("listen 80", "unexpected end of file"),
        ("{ listen 80; }", "unexpected '{'"),
    ],
)
def test_broken_configurations_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(NginxParseError, match=message) as info:
        _parse(text, "/etc/nginx/broken.conf")
    assert "/etc/nginx/broken.conf" in str(info.value)


def test_quote_gives_back_what_the_tokenizer_reads() -> None:
    for word in ["plain", "/a/b.pem", "with space", 'a"b', "semi;colon", "x{y}", "", "it's"]:
        written = dump_directive("d", [word])
        tokens = [t.value for t in tokenize(written)]
        assert tokens == ["d", word, ";"], written
    assert quote("/etc/ssl/x.pem") == "/etc/ssl/x.pem"


def test_includes_follow_globs_in_order_relative_to_the_conf_directory(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "snippets").mkdir()
    (tmp_path / "nginx.conf").write_text(
        "events {}\nhttp {\n    include mime.types;\n    include sites/*.conf;\n}\n"
    )
    (tmp_path / "mime.types").write_text("types { text/html html; }\n")
    (tmp_path / "sites" / "b.conf").write_text("server { server_name b.test; }\n")
    (tmp_path / "sites" / "a.conf").write_text(
        "server { server_name a.test; include snippets/tls.conf; }\n"
    )
    (tmp_path / "sites" / "ignored.txt").write_text("not { valid")
    (tmp_path / "snippets" / "tls.conf").write_text("ssl_protocols TLSv1.3;\n")
    config = NginxConfig.load(tmp_path / "nginx.conf")
    names = [d.args[0] for d in walk(config.main.directives) if d.name == "server_name"]
    assert names == ["a.test", "b.test"]
    assert set(config.files) == {
        tmp_path / "nginx.conf",
        tmp_path / "mime.types",
        tmp_path / "sites" / "a.conf",
        tmp_path / "sites" / "b.conf",
        tmp_path / "snippets" / "tls.conf",
    }
    assert any(d.name == "ssl_protocols" for d in walk(config.main.directives))


def test_an_include_of_a_missing_file_is_an_error_but_an_empty_glob_is_not(
    tmp_path: Path,
) -> None:
    (tmp_path / "nginx.conf").write_text("http { include conf.d/*.conf; }\n")
    config = NginxConfig.load(tmp_path / "nginx.conf")
    assert list(config.files) == [tmp_path / "nginx.conf"]
    (tmp_path / "nginx.conf").write_text("http {\n    include missing.conf;\n}\n")
    with pytest.raises(NginxParseError, match=r"nginx.conf:2: included file .*missing.conf"):
        NginxConfig.load(tmp_path / "nginx.conf")

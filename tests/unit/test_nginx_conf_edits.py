"""What the nginx plugin writes: the http-01 includes, the installation, the backups.
The files are only parsed here; tests/integration/test_nginx_plugin.py runs nginx."""

from __future__ import annotations

import os
from pathlib import Path

from acmekit.certbot.nginx.authenticator import _Answer, location_block, plan, server_level_if
from acmekit.certbot.nginx.backup import Checkpoint, checkpoints
from acmekit.certbot.nginx.edit import MARK
from acmekit.certbot.nginx.installer import (
    Installation,
    copy_of_block,
    plan_install,
    plan_new_blocks,
    redirect_lines,
)
from acmekit.certbot.nginx.parser import NginxConfig, walk
from acmekit.certbot.nginx.vhosts import MatchKind, select, server_blocks

MAIN = """# main file
events { }
http {
    include sites/*.conf;
    server {
        listen 8080 default_server;
        server_name _;
        return 404;
    }
}
"""
SITE_A = """server {
    listen 8080;
    server_name a.test www.a.test;   # two names

    location / { return 200 "a"; }
}
"""
SITE_B = "server { listen 127.0.0.1:8080; server_name b.test; }\n"


def _tree(tmp_path: Path) -> NginxConfig:
    (tmp_path / "sites").mkdir()
    (tmp_path / "nginx.conf").write_text(MAIN)
    (tmp_path / "sites" / "a.conf").write_text(SITE_A)
    (tmp_path / "sites" / "b.conf").write_text(SITE_B)
    return NginxConfig.load(tmp_path / "nginx.conf")


def _write(config: NginxConfig, changes: object, tmp_path: Path) -> Checkpoint:
    checkpoint = Checkpoint.new(tmp_path / "backups", "test")
    changes.write(checkpoint)  # type: ignore[attr-defined]
    return checkpoint


def test_http01_include_goes_into_the_block_nginx_picks(tmp_path: Path) -> None:
    config = _tree(tmp_path)
    answers = [
        _Answer("www.a.test", "tok1", "tok1.ka"),
        _Answer("b.test", "tok2", "tok2.ka"),
        _Answer("c.test", "tok3", "tok3.ka"),  # no block: the default server
    ]
    work = tmp_path / "work"
    changes, where = plan(config, answers, 8080, work)
    assert where["www.a.test"].endswith(f"a.conf:1 ({MatchKind.EXACT})")
    assert where["c.test"].endswith(f"nginx.conf:5 ({MatchKind.DEFAULT})")
    rendered = changes.rendered()
    site_a = rendered[tmp_path / "sites" / "a.conf"]
    include_line = next(ln for ln in site_a.splitlines(keepends=True) if "include" in ln)
    assert include_line.startswith("    include ") and MARK in include_line
    assert site_a.replace(include_line, "", 1) == SITE_A  # first in the block, all else kept
    site_b = rendered[tmp_path / "sites" / "b.conf"]  # a one-line block
    assert site_b.startswith("server {\n    include ")
    assert site_b.endswith(
        f"{MARK} (http-01)\n     listen 127.0.0.1:8080; server_name b.test; }}\n"
    )
    files = {p.name: t for p, t in rendered.items() if p.parent == work}
    served = "".join(files.values())
    assert location_block("tok1", "tok1.ka") in served
    # the default server answers with `return 404` at server level: the `if` runs first
    assert server_level_if("tok3", "tok3.ka") in served
    assert server_level_if("tok1", "tok1.ka") not in served
    checkpoint = _write(config, changes, tmp_path)
    reread = NginxConfig.load(tmp_path / "nginx.conf")
    locations = [d for d in walk(reread.main.directives) if d.name == "location"]
    assert ["=", "/.well-known/acme-challenge/tok2"] in [d.args for d in locations]
    checkpoint.rollback()
    assert (tmp_path / "sites" / "a.conf").read_text() == SITE_A
    assert (tmp_path / "sites" / "b.conf").read_text() == SITE_B
    assert (tmp_path / "nginx.conf").read_text() == MAIN
    assert not any(work.glob("*.conf"))


def test_http01_on_a_port_nothing_listens_on_adds_a_server_block(tmp_path: Path) -> None:
    config = _tree(tmp_path)
    changes, where = plan(config, [_Answer("a.test", "t", "t.k")], 8999, tmp_path / "w")
    assert where == {"a.test": "a new server block"}
    _write(config, changes, tmp_path)
    reread = NginxConfig.load(tmp_path / "nginx.conf")
    match = select(server_blocks(reread), "a.test", 8999)
    assert match is not None and match.kind == MatchKind.EXACT
    assert [d.args for d in walk(match.block.directive.block or []) if d.name == "return"] == [
        ["200", "t.k"]
    ]


def _inst(tmp_path: Path, names: list[str], **kw: object) -> Installation:
    live = tmp_path / "live" / names[0]
    return Installation(
        names, live / "fullchain.pem", live / "privkey.pem", https_port=8443, http_port=8080, **kw
    )  # type: ignore[arg-type]


def test_install_adds_tls_to_the_named_block_and_keeps_the_rest(tmp_path: Path) -> None:
    config = _tree(tmp_path)
    inst = _inst(tmp_path, ["a.test", "www.a.test"])
    changes, report, missing = plan_install(config, inst)
    assert missing == []
    assert list(report.blocks.values()) == [["a.test", "www.a.test"]]
    text = changes.rendered()[tmp_path / "sites" / "a.conf"]
    assert text.startswith(SITE_A.removesuffix("}\n"))
    assert f"    ssl_certificate {inst.fullchain}; {MARK}\n" in text
    assert f"    ssl_certificate_key {inst.privkey}; {MARK}\n" in text
    assert f"    listen 8443 ssl; {MARK}\n" in text
    assert "acmekit_redirect" not in text
    _write(config, changes, tmp_path)
    # a second install finds TLS there: nothing to change
    again, _, _ = plan_install(NginxConfig.load(tmp_path / "nginx.conf"), inst)
    assert not again


def test_install_replaces_an_existing_certificate_and_keeps_the_address(
    tmp_path: Path,
) -> None:
    config = _tree(tmp_path)
    (tmp_path / "sites" / "b.conf").write_text(
        "server { listen 127.0.0.1:8080; listen 127.0.0.1:8443 ssl; server_name b.test;\n"
        "  ssl_certificate old.pem; ssl_certificate_key old.key; ssl_certificate old-rsa.pem;\n}\n"
    )
    config = config.reload()
    inst = _inst(tmp_path, ["b.test"])
    changes, _, _ = plan_install(config, inst)
    text = changes.rendered()[tmp_path / "sites" / "b.conf"]
    assert "old" not in text
    _write(config, changes, tmp_path)
    # read back as nginx reads it
    block = next(b for b in server_blocks(config.reload()) if b.names == ("b.test",))
    got = [(d.name, d.args) for d in block.directives()]
    assert got == [
        ("listen", ["127.0.0.1:8080"]),
        ("listen", ["127.0.0.1:8443", "ssl"]),
        ("server_name", ["b.test"]),
        ("ssl_certificate", [str(inst.fullchain)]),
        ("ssl_certificate_key", [str(inst.privkey)]),
    ]


def test_a_one_line_default_server_is_copied_into_a_block_nginx_reads(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text(
        "http { server { listen 8080 default_server reuseport; server_name _; return 404; } }\n"
    )
    config = NginxConfig.load(tmp_path / "nginx.conf")
    _write(config, plan_new_blocks(config, ["new.test"], 8080), tmp_path)
    blocks = server_blocks(config.reload())
    assert [b.names for b in blocks] == [("_",), ("new.test",)]
    copy = blocks[1]
    assert [(d.name, d.args) for d in copy.directives()] == [
        ("server_name", ["new.test"]),
        ("listen", ["8080"]),
        ("return", ["404"]),
    ]


def test_redirect_lines_spare_https_and_challenges(tmp_path: Path) -> None:
    config = _tree(tmp_path)
    changes, _, _ = plan_install(config, _inst(tmp_path, ["a.test"], redirect=True))
    text = changes.rendered()[tmp_path / "sites" / "a.conf"]
    for line in redirect_lines(["a.test"], 8443):
        assert f"    {line}\n" in text
    assert "return 301 https://$host:8443$request_uri;" in text
    assert "https://$host$request_uri" in redirect_lines(["a.test"], 443)[-1]


def test_a_name_without_a_block_gets_a_copy_of_the_default_server(tmp_path: Path) -> None:
    config = _tree(tmp_path)
    default = select(server_blocks(config), "new.test", 8080)
    assert default is not None
    copy = copy_of_block(default.block, ["new.test"])
    assert "default_server" not in copy and "server_name _" not in copy
    assert "server_name new.test;" in copy and "return 404;" in copy
    checkpoint = _write(config, plan_new_blocks(config, ["new.test"], 8080), tmp_path)
    reread = NginxConfig.load(tmp_path / "nginx.conf")
    match = select(server_blocks(reread), "new.test", 8080)
    assert match is not None and match.kind == MatchKind.EXACT
    assert match.block.directive.file.path == tmp_path / "nginx.conf"
    checkpoint.rollback()
    assert (tmp_path / "nginx.conf").read_text() == MAIN


def test_checkpoint_restores_bytes_and_modes_through_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "sites-available" / "default"
    real.parent.mkdir()
    real.write_bytes(b"server { listen 80; }\r\n# \xe9 latin-1 byte\n")
    real.chmod(0o640)
    link = tmp_path / "sites-enabled-default"
    link.symlink_to(real)
    checkpoint = Checkpoint.new(tmp_path / "backups", "t")
    checkpoint.save(link)
    checkpoint.save(tmp_path / "created.conf")
    real.write_text("changed")
    (tmp_path / "created.conf").write_text("new")
    assert [c.directory for c in checkpoints(tmp_path / "backups")] == [checkpoint.directory]
    Checkpoint(checkpoint.directory).rollback()  # as `acmekit rollback` reads it back
    assert real.read_bytes() == b"server { listen 80; }\r\n# \xe9 latin-1 byte\n"
    assert os.stat(real).st_mode & 0o777 == 0o640
    assert link.is_symlink()
    assert not (tmp_path / "created.conf").exists()


def test_redirect_goes_to_the_plain_block_when_tls_is_in_another(tmp_path: Path) -> None:
    config = _tree(tmp_path)
    (tmp_path / "sites" / "b.conf").write_text(
        "server { listen 8080; server_name b.test; return 404; }\n"
        "server {\n    listen 8443 ssl;\n    server_name b.test;\n"
        "    ssl_certificate old.pem;\n    ssl_certificate_key old.key;\n}\n"
    )
    config = config.reload()
    inst = _inst(tmp_path, ["b.test"], redirect=True)
    changes, report, missing = plan_install(config, inst)
    assert missing == [] and list(report.blocks.values()) == [["b.test"]]
    text = changes.rendered()[tmp_path / "sites" / "b.conf"]
    plain, tls = text.split("\nserver {\n", 1)
    assert plain.index("set $acmekit_redirect 0;") < plain.index("return 404;")
    assert "acmekit_redirect" not in tls
    assert f"ssl_certificate {inst.fullchain};" in tls and "old" not in tls
    assert tls.count("listen") == 1  # TLS was there already

"""The README's and docs' example commands, taken from the documents themselves (see
`acmekit_testkit.docs`): every `acmekit` command line in them is accepted by the real
command-line parser, and the blocks that run on loopback alone run as written, with
their ports moved, and print what their comments say; a `$ acmekit` transcript prints
what the docs show, and a TOML example is a valid server configuration. (The README's
certbot block runs in tests/interop/test_readme_make_run.py.)"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import click
import pytest

from acmekit.cli.main import cli
from acmekit.server.config import load_config
from acmekit_testkit.docs import (
    REPO,
    Example,
    MakeRun,
    documents,
    example_blocks,
    examples,
    fenced,
    run_block,
    transcripts,
)
from acmekit_testkit.ports import free_port, free_tcp_udp_port


def _acmekit_args(example: Example) -> list[str] | None:
    """The arguments of an `acmekit` command line (after any VAR=VALUE), else None."""
    argv = example.argv()
    while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
        argv.pop(0)
    if not argv or Path(argv[0]).name != "acmekit":
        return None
    return argv[1:]


COMMANDS = [e for e in examples() + transcripts() if _acmekit_args(e) is not None]


def _parse(command: click.Command, args: list[str], name: str, parent: click.Context | None) -> str:
    """Parse `args` as `command` would, down to the last subcommand, running nothing;
    the subcommand's full name."""
    ctx = click.Context(command, info_name=name, parent=parent)
    with ctx:
        command.parse_args(ctx, list(args))
        # A group keeps the subcommand's name apart from its arguments (click 8.2+).
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if isinstance(command, click.Group) and rest:
            sub_name, sub, sub_args = command.resolve_command(ctx, rest)
            assert sub is not None and sub_name is not None
            return _parse(sub, sub_args, sub_name, ctx)
    return ctx.command_path


def test_the_docs_have_examples_of_every_program() -> None:
    paths = {_parse(cli, _acmekit_args(e) or [], "acmekit", None) for e in COMMANDS}
    assert {"acmekit certonly", "acmekit dns", "acmekit fleet serve", "acmekit fleet add",
            "acmekit fleet list"} <= paths  # fmt: skip


@pytest.mark.parametrize("example", COMMANDS, ids=str)
def test_every_documented_command_parses(example: Example) -> None:
    args = _acmekit_args(example)
    assert args is not None
    _parse(cli, args, "acmekit", None)


def _block(document: str, first: str) -> list[Example]:
    (block,) = [b for b in example_blocks(REPO / document) if b and b[0].command.startswith(first)]
    return block


def test_the_dns_example_runs(tmp_path: Path) -> None:
    dns, api = free_tcp_udp_port(), free_port()
    moves = {"127.0.0.1:8053": f"127.0.0.1:{dns}", "-p 8053": f"-p {dns}",
             "127.0.0.1:8055": f"127.0.0.1:{api}"}  # fmt: skip
    outputs = run_block(_block("docs/dns.md", "acmekit dns"), tmp_path, moves, {})
    assert outputs[-1].strip() == '"hello"'


def test_the_fleet_quick_start_runs(tmp_path: Path) -> None:
    run, fleet_api = MakeRun.on_free_ports(tmp_path / "state"), free_port()
    moves = {
        "127.0.0.1:14000": f"127.0.0.1:{run.ca}",
        "127.0.0.1:5002": f"127.0.0.1:{run.http01}",
        "127.0.0.1:8080": f"127.0.0.1:{fleet_api}",
    }
    run_block(_block("docs/fleet.md", "make run"), tmp_path, moves, run.variables())
    assert (tmp_path / "edge" / "www.shop.test" / "privkey.pem").stat().st_mode & 0o777 == 0o600


def test_the_readme_quick_start_with_its_own_dns_runs(tmp_path: Path) -> None:
    """The CA, `acmekit dns` and certonly --standalone as three programs: the DNS server
    must answer the name with loopback (`--default-ipv4`), or http-01 gets NXDOMAIN."""
    dns, api, ca, crl, http01 = (
        free_tcp_udp_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    )
    moves = {
        "127.0.0.1:8053": f"127.0.0.1:{dns}",
        "127.0.0.1:8055": f"127.0.0.1:{api}",
        "127.0.0.1:14000": f"127.0.0.1:{ca}",
        "127.0.0.1:14080": f"127.0.0.1:{crl}",
        "port 5002": f"port {http01}",
    }
    block = _block("README.md", ".venv/bin/acmekit dns")
    outputs = run_block(block, tmp_path, moves, {})
    assert "Successfully received certificate." in outputs[-1]
    assert (tmp_path / "client" / "etc" / "live" / "www.example.test" / "cert.pem").exists()


_ID = re.compile(r"^[0-9a-f]{16}$")  # a site's id: new at every run


@pytest.mark.parametrize("example", transcripts(), ids=str)
def test_a_transcript_prints_what_the_docs_show(example: Example, tmp_path: Path) -> None:
    """A `$ acmekit ...` line run in an empty directory prints the lines shown after it
    (an id stands for any id)."""
    assert example.expect is not None
    output = run_block([replace(example, expect=None)], tmp_path, {}, {})[0]
    shown, printed = example.expect.splitlines(), output.splitlines()
    assert len(printed) == len(shown), output
    for doc_line, line in zip(shown, printed, strict=True):
        assert (_ID.match(doc_line) and _ID.match(line)) or doc_line == line, output


@pytest.mark.parametrize(
    ("document", "block"),
    [(doc, block) for doc in documents() for block in fenced(doc, "toml")],
    ids=lambda v: v.name if isinstance(v, Path) else f"line {v[0]}",
)
def test_a_toml_example_is_a_valid_config(
    document: Path, block: tuple[int, str], tmp_path: Path
) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(block[1])
    if document.name == "dns.md":  # `acmekit dns --config`: its flags as keys
        from acmekit.cli.dns import dns

        dns.make_context("dns", ["--config", str(path)])
    else:
        load_config(path, {})

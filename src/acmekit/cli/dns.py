"""`acmekit dns`: the authoritative DNS server for ACME challenges, with its HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tomllib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from acmekit.cli.errors import PlainErrorsCommand
from acmekit.dns.rrl import RrlSettings
from acmekit.dns.service import DnsConfig, DnsService
from acmekit.hostport import parse_host_port
from acmekit.protocol.problems import AcmeError


def parse_hostport(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT`; port 0 lets the system choose."""
    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _notify_target(text: str) -> str:
    try:
        host, port = parse_host_port(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--notify") from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _serve(service: DnsService) -> None:
    await service.start()
    click.echo(service.banner())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await service.stop()


def _load_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """`--config FILE.toml`: any option as a top-level key named like its flag
    (`allow-transfer = ["xfr-key"]`, `notify = ["10.0.0.21:53"]`, `db = "..."`); the
    command line wins over the file."""
    if path is None:
        return
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from None
    names = {
        opt.lstrip("-"): p.name
        for p in ctx.command.params
        if isinstance(p, click.Option) and p.name is not None
        for opt in p.opts
    }
    defaults: dict[str, Any] = {}
    for key, value in doc.items():
        name = names.get(key) or names.get(key.replace("_", "-"))
        if name is None or name == "config_file":
            raise click.BadParameter(f"{path}: unknown setting {key!r}", param_hint="--config")
        defaults[name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


@click.command("dns", cls=PlainErrorsCommand)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="TOML file of settings named like the options (the command line wins).",
)
@click.option("--listen", default="127.0.0.1:8053", show_default=True, help="UDP+TCP HOST:PORT.")
@click.option("--api", default="127.0.0.1:8055", show_default=True, help="HTTP API HOST:PORT.")
@click.option("--no-api", is_flag=True, help="Serve DNS only.")
@click.option("--default-ipv4", help="A record for every name not otherwise known.")
@click.option("--default-ipv6", help="AAAA record for every name not otherwise known.")
@click.option(
    "--zone",
    "zones",
    multiple=True,
    help="Zone to be authoritative for (repeatable). Without any, every name is served "
    "and a name's zone is its last two labels.",
)
@click.option(
    "--tsig-key",
    "tsig_keys",
    multiple=True,
    help="[ALG:]NAME:BASE64SECRET of a key for UPDATE of TXT records or for transfers "
    "(repeatable). Without --allow-update, every key not named in --allow-transfer may UPDATE.",
)
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), help="State file.")
@click.option("--api-token", envvar="ACMEKIT_DNS_API_TOKEN", help="Bearer token for the API.")
@click.option("--delegation-domain", help="Where acme-dns registrations live.")
@click.option("--ns-ipv4", help="Address of the zones' NS host (default: the listen address).")
@click.option(
    "--rrl-rate",
    type=click.FloatRange(min=0),
    default=RrlSettings.rate,
    show_default=True,
    help="UDP responses per second to one /24 or /56 (BIND's RRL); 0 turns it off.",
)
@click.option(
    "--rrl-slip",
    type=click.IntRange(min=0),
    default=RrlSettings.slip,
    show_default=True,
    help="Every Nth response over the rate is sent truncated (TC=1); 0: none.",
)
@click.option(
    "--rrl-exempt-loopback/--no-rrl-exempt-loopback",
    default=True,
    show_default=True,
    help="Do not rate limit clients on 127.0.0.0/8 and ::1.",
)
@click.option(
    "--notify",
    "notify",
    multiple=True,
    help="HOST:PORT of a secondary to send NOTIFY to on every change (repeatable).",
)
@click.option(
    "--allow-transfer",
    "allow_transfer",
    multiple=True,
    help="TSIG key name (from --tsig-key) that may transfer the zones, AXFR/IXFR (repeatable).",
)
@click.option(
    "--allow-update",
    "allow_update",
    multiple=True,
    help="TSIG key name (from --tsig-key) that may UPDATE TXT records (repeatable). "
    "Given, only these keys may; a key in --allow-transfer too may then do both.",
)
@click.option(
    "--tcp-max-connections",
    type=click.IntRange(min=1),
    help="TCP connections held at once, from all clients (default: 1024, or half the "
    "file-descriptor limit if less); past it the longest idle one is closed.",
)
@click.option(
    "--db",
    help="Database URL (postgresql://...) whose records several acmekit dns processes share.",
)
def dns(
    listen: str,
    api: str,
    no_api: bool,
    default_ipv4: str | None,
    default_ipv6: str | None,
    zones: tuple[str, ...],
    tsig_keys: tuple[str, ...],
    state: Path | None,
    api_token: str | None,
    delegation_domain: str | None,
    ns_ipv4: str | None,
    rrl_rate: float,
    rrl_slip: int,
    rrl_exempt_loopback: bool,
    notify: tuple[str, ...],
    allow_transfer: tuple[str, ...],
    allow_update: tuple[str, ...],
    db: str | None,
    tcp_max_connections: int | None,
) -> None:
    """Serve ACME challenge records over DNS (UDP, TCP, RFC 2136 UPDATE) and HTTP."""
    listen_host, listen_port = parse_hostport(listen)
    api_host, api_port = parse_hostport(api)
    if state is not None and not state.absolute().parent.is_dir():
        raise click.BadParameter(f"directory {state.parent} does not exist", param_hint="--state")
    config = DnsConfig(
        listen_host=listen_host,
        listen_port=listen_port,
        api_host=None if no_api else api_host,
        api_port=api_port,
        default_ipv4=default_ipv4,
        default_ipv6=default_ipv6,
        zones=zones,
        tsig_keys=tsig_keys,
        state=state,
        api_token=api_token,
        delegation_domain=delegation_domain,
        ns_ipv4=ns_ipv4,
        rrl=RrlSettings(rate=rrl_rate, slip=rrl_slip, exempt_loopback=rrl_exempt_loopback),
        notify=tuple(_notify_target(t) for t in notify),
        allow_transfer=allow_transfer,
        allow_update=allow_update,
        db=db,
        tcp_max_connections=tcp_max_connections,
    )
    try:
        service = DnsService(config)
    except (ValueError, AcmeError) as exc:
        raise click.UsageError(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        _run(_serve(service))


def _run(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when it is installed (it comes with uvicorn[standard]): about 1.5x the qps."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)

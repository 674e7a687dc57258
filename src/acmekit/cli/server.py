"""`acmekit server`: run the CA (flags override the TOML file)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group(invoke_without_command=True)
@click.option("--listen", default=None, help="HOST:PORT for HTTPS [127.0.0.1:14000]")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, help="CA state [state]")
@click.option("--db", default=None, help="database URL (sqlite:///F or postgresql://...)")
@click.option("--dns-resolver", default=None, help="HOST:PORT used for validation lookups")
@click.option("--http01-port", type=int, default=None, help="port http-01 connects to [80]")
@click.option("--tlsalpn01-port", type=int, default=None, help="port tls-alpn-01 uses [443]")
@click.option(
    "--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.pass_context
def server(
    ctx: click.Context,
    listen: str | None,
    state_dir: Path | None,
    db: str | None,
    dns_resolver: str | None,
    http01_port: int | None,
    tlsalpn01_port: int | None,
    config_file: Path | None,
) -> None:
    """Run the ACME certificate authority."""
    if ctx.invoked_subcommand is not None:
        return
    from acmekit.server.config import load_config
    from acmekit.server.run import run

    try:
        config = load_config(
            config_file,
            {
                "listen": listen,
                "state_dir": state_dir,
                "db": db,
                "dns_resolver": dns_resolver,
                "http01_port": http01_port,
                "tlsalpn01_port": tlsalpn01_port,
            },
        )
        config.host_port  # noqa: B018 - validates the listen address early
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        run(config)
    except OSError as exc:
        click.echo(f"acmekit server: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass

"""`acmekit server`: run the CA (flags override the TOML file), and operate on its
database: `eab add / list / revoke`, `ari move`, `db upgrade / current`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from acmekit.cli.errors import plain_errors
from acmekit.cli.main import log_progress_by_default

if TYPE_CHECKING:
    from acmekit.server.store import Store


@click.group(invoke_without_command=True)
@click.option("--listen", default=None, help="HOST:PORT for HTTPS [127.0.0.1:14000]")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, help="CA state [state]")
@click.option("--db", default=None, help="database URL (sqlite:///F or postgresql://...)")
@click.option("--dns-resolver", default=None, help="HOST:PORT used for validation lookups")
@click.option(
    "--http01-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="port http-01 connects to [80]",
)
@click.option(
    "--tlsalpn01-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="port tls-alpn-01 uses [443]",
)
@click.option(
    "--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.option("--crl-listen", default=None, help="HOST:PORT for CRLs over HTTP [127.0.0.1:14080]")
@click.option(
    "--allow-validation-network",
    "allow_networks",
    multiple=True,
    metavar="CIDR",
    help="reserved network validation may reach and IP identifiers may name, e.g. "
    "127.0.0.0/8 for tests (repeatable; [validation] allow_networks)",
)
@click.option(
    "--allow-special-name",
    "allowed_special_names",
    multiple=True,
    metavar="NAME",
    help="special-use domain (RFC 6761) that may be ordered, with the names under it, e.g. "
    "test (repeatable; [validation] allowed_special_names)",
)
@click.option(
    "--no-auto-upgrade",
    is_flag=True,
    help="refuse to start on an older database schema instead of upgrading it",
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
    crl_listen: str | None,
    allow_networks: tuple[str, ...],
    allowed_special_names: tuple[str, ...],
    no_auto_upgrade: bool,
) -> None:
    """Run the ACME certificate authority."""
    if ctx.invoked_subcommand is not None:
        ctx.ensure_object(dict).update(state_dir=state_dir, db=db, config_file=config_file)
        return
    from acmekit.migrate import SchemaOutOfDate
    from acmekit.server.config import load_config
    from acmekit.server.run import run
    from acmekit.server.validation.dnssec import ResolverNotValidating

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
                "crl_listen": crl_listen,
                "allow_networks": allow_networks,
                "allowed_special_names": allowed_special_names,
                "auto_upgrade": False if no_auto_upgrade else None,
            },
        )
        config.host_port  # noqa: B018 - validates the listen address early
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    log_progress_by_default()
    addresses = {"--listen": config.listen, "--crl-listen": config.crl.listen}
    try:
        with plain_errors(addresses, config.db_url):
            run(config)
    except (SchemaOutOfDate, ResolverNotValidating) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------------------------
# Operator commands: the same --state-dir / --db / --config as the server, given before
# or after the subcommand's name.


def _database_options(func: Callable[..., Any]) -> Callable[..., Any]:
    existing = click.Path(path_type=Path, exists=True, dir_okay=False)
    func = click.option("--config", "config_file", default=None, type=existing)(func)
    func = click.option("--db", default=None, help="database URL")(func)
    return click.option("--state-dir", type=click.Path(path_type=Path), default=None)(func)


def _db_url(
    state_dir: Path | None, db: str | None, config_file: Path | None, *, create: bool = False
) -> str:
    from acmekit.server.config import load_config

    given = click.get_current_context().find_object(dict) or {}
    try:
        config = load_config(
            config_file or given.get("config_file"),
            {"state_dir": state_dir or given.get("state_dir"), "db": db or given.get("db")},
        )
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if config.db is None and not (config.state_dir / "acmekit.db").exists():
        # Only `eab add` and `db upgrade` may prepare a CA before its first start; nothing
        # else may start a new, empty database in a mistyped directory.
        if not create:
            raise click.ClickException(
                f"no CA database in {config.state_dir} (is --state-dir right?)"
            )
        config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return config.db_url


@contextmanager
def _store(
    state_dir: Path | None, db: str | None, config_file: Path | None, *, create: bool = False
) -> Iterator[Store]:
    from acmekit.server.store import Store

    url = _db_url(state_dir, db, config_file, create=create)
    with plain_errors({}, url):
        store = Store.from_url(url)
        try:
            yield store
        finally:
            store.engine.dispose()


@contextmanager
def _admin_errors() -> Iterator[None]:
    from acmekit.server.admin import AdminError

    try:
        yield
    except AdminError as exc:
        raise click.ClickException(str(exc)) from exc


@server.group()
def eab() -> None:
    """External Account Binding keys for new customers (kept in the CA's database)."""


@eab.command("add")
@click.option("--kid", default=None, help="key ID [random]")
@_database_options
def eab_add(
    kid: str | None, state_dir: Path | None, db: str | None, config_file: Path | None
) -> None:
    """Make a key; prints its key ID and base64url HMAC key for the customer."""
    from acmekit.server.admin import add_eab_key

    with _store(state_dir, db, config_file, create=True) as store, _admin_errors():
        key = add_eab_key(store, datetime.now(UTC), kid)
    click.echo(f"kid: {key.kid}")
    click.echo(f"hmac-key: {key.hmac_key}")
    # One token per flag: a base64url key may start with "-", which certbot (argparse)
    # reads as a flag when it stands alone after `--eab-hmac-key`.
    click.echo(f"certbot: --eab-kid={key.kid} --eab-hmac-key={key.hmac_key}")


@eab.command("list")
@_database_options
def eab_list(state_dir: Path | None, db: str | None, config_file: Path | None) -> None:
    """Key ID, creation time and state of every key (never the HMAC keys)."""
    from acmekit.server.admin import describe_eab_key

    with _store(state_dir, db, config_file) as store:
        for key in store.accounts.eab_keys():
            click.echo(describe_eab_key(key))


@eab.command("revoke")
@click.argument("kid")
@_database_options
def eab_revoke(kid: str, state_dir: Path | None, db: str | None, config_file: Path | None) -> None:
    """Stop a key from binding any further account."""
    from acmekit.server.admin import revoke_eab_key

    with _store(state_dir, db, config_file) as store, _admin_errors():
        revoke_eab_key(store, kid, datetime.now(UTC))
    click.echo(f"revoked: {kid}")


@server.group()
def ari() -> None:
    """ACME Renewal Information (RFC 9773) for issued certificates."""


def _when(text: str | None, now: bool) -> datetime:
    if now == (text is not None):
        raise click.UsageError("give exactly one of --to and --now")
    if text is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an RFC 3339 time", param_hint="--to") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@ari.command("move")
@click.option("--serial", required=True, help="the certificate's serial number in hex")
@click.option("--to", "to", default=None, help="RFC 3339 time the window starts at")
@click.option("--now", "now", is_flag=True, help="start the window now")
@_database_options
def ari_move(
    serial: str,
    to: str | None,
    now: bool,
    state_dir: Path | None,
    db: str | None,
    config_file: Path | None,
) -> None:
    """Move a certificate's suggested renewal window to start at a given time."""
    from acmekit.server.admin import move_ari_window

    start = _when(to, now)
    with _store(state_dir, db, config_file) as store, _admin_errors():
        rec = move_ari_window(store, serial, start)
    click.echo(f"moved: {rec.serial} window starts {start.strftime('%Y-%m-%dT%H:%M:%SZ')}")


@server.group("db")
def db_group() -> None:
    """The CA database's schema: upgrade it, or show its revision."""


@db_group.command("upgrade")
@_database_options
def db_upgrade(state_dir: Path | None, db: str | None, config_file: Path | None) -> None:
    """Upgrade the database to this acmekit's schema (a server start does it too); a new
    one is made, for a CA that starts with --no-auto-upgrade."""
    from acmekit import migrate

    url = _db_url(state_dir, db, config_file, create=True)
    click.echo(migrate.upgrade_report(url, migrate.SERVER))


@db_group.command("current")
@_database_options
def db_current(state_dir: Path | None, db: str | None, config_file: Path | None) -> None:
    """Show the database's schema revision and the one this acmekit needs."""
    from acmekit import migrate

    click.echo(migrate.current_report(_db_url(state_dir, db, config_file), migrate.SERVER))


# ---------------------------------------------------------------------------------------
# Remote validation perspectives (multi-perspective issuance corroboration, BR 3.2.2.9)


@server.command("perspective")
@click.option("--listen", required=True, help="HOST:PORT for HTTPS (mutual TLS)")
@click.option("--name", required=True, help="the perspective's name, as in the CA's [mpic]")
@click.option(
    "--rir",
    required=True,
    type=click.Choice(["ARIN", "RIPE", "APNIC", "LACNIC", "AFRINIC"], case_sensitive=False),
    help="the Regional Internet Registry whose region the perspective is in",
)
@click.option(
    "--state-dir",
    "perspective_dir",
    required=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="server.pem, server.key and ca.pem from `acmekit server perspective-certs`",
)
@click.option("--dns-resolver", default=None, help="HOST:PORT used for validation lookups")
@click.option("--http01-port", type=click.IntRange(0, 65535), default=80, show_default=True)
@click.option("--tlsalpn01-port", type=click.IntRange(0, 65535), default=443, show_default=True)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="per validation")
@click.option("--caa-timeout", type=float, default=5.0, show_default=True)
@click.option("--allow-validation-network", "allow_networks", multiple=True, metavar="CIDR")
@click.option("--allow-special-name", "allowed_special_names", multiple=True, metavar="NAME")
@click.option(
    "--dnssec",
    type=click.Choice(["off", "require-validating-resolver"]),
    default="off",
    show_default=True,
    help="as the CA's [validation] dnssec",
)
@click.option("--dnssec-probe", default=".", show_default=True)
def perspective(
    listen: str,
    name: str,
    rir: str,
    perspective_dir: Path,
    dns_resolver: str | None,
    http01_port: int,
    tlsalpn01_port: int,
    timeout: float,
    caa_timeout: float,
    allow_networks: tuple[str, ...],
    allowed_special_names: tuple[str, ...],
    dnssec: str,
    dnssec_probe: str,
) -> None:
    """Run a remote validation perspective: the CA asks it to corroborate validations."""
    import asyncio

    from acmekit.hostport import parse_host_port
    from acmekit.server.mpic.certs import PerspectiveFiles
    from acmekit.server.mpic.perspective import PerspectiveConfig, serve
    from acmekit.server.mpic.quorum import Rir
    from acmekit.server.validation import ValidationConfig
    from acmekit.server.validation.dnssec import (
        DnssecMode,
        ResolverNotValidating,
        probe_validating_resolver,
    )
    from acmekit.server.validation.reserved import parse_networks

    try:
        host, port = parse_host_port(listen)
        resolver = parse_host_port(dns_resolver) if dns_resolver else None
        parse_networks(allow_networks)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    files = PerspectiveFiles(perspective_dir)
    missing = [p.name for p in (files.chain, files.key, files.ca) if not p.exists()]
    if missing:
        raise click.ClickException(
            f"{perspective_dir} lacks {', '.join(missing)}: run `acmekit server perspective-certs`"
        )
    config = PerspectiveConfig(
        name=name,
        rir=Rir(rir.upper()),
        files=files,
        validation=ValidationConfig(
            dns_resolver=resolver,
            http01_port=http01_port,
            tlsalpn01_port=tlsalpn01_port,
            timeout=timeout,
            allow_networks=allow_networks,
            dnssec=DnssecMode(dnssec),
        ),
        allowed_special_names=tuple(n.strip(".").lower() for n in allowed_special_names),
        caa_timeout=caa_timeout,
    )
    log_progress_by_default()

    async def main() -> None:
        if config.validation.dnssec is not DnssecMode.OFF:
            await probe_validating_resolver(resolver, dnssec_probe)
        await serve(config, host, port, lambda line: click.echo(line))

    try:
        with plain_errors({"--listen": listen}, None):
            asyncio.run(main())
    except (OSError, ResolverNotValidating) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@server.command("perspective-certs")
@click.option(
    "--state-dir",
    "ca_state",
    required=True,
    type=click.Path(path_type=Path),
    help="the CA's state directory (its root and intermediate; made if new)",
)
@click.option("--name", required=True, help="the perspective's name, as in the CA's [mpic]")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    help="a name or address the CA reaches the perspective at (repeatable)",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="the perspective's state directory",
)
def perspective_certs(ca_state: Path, name: str, hosts: tuple[str, ...], out: Path) -> None:
    """Issue a perspective's server certificate from the CA's root into --out (with the
    root, to check the CA's client certificate), and the CA's client certificate into
    its state directory if it has none."""
    from acmekit.server.ca import load_or_create_issuer
    from acmekit.server.mpic.certs import ensure_client_credentials, issue_perspective_credentials

    now = datetime.now(UTC)
    issuer = load_or_create_issuer(ca_state, now)
    client, _ = ensure_client_credentials(issuer, ca_state, now)
    files = issue_perspective_credentials(issuer, ca_state / "root.pem", out, name, hosts, now)
    click.echo(f"perspective: {files.chain}")
    click.echo(f"ca client: {client}")

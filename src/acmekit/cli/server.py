"""`acmekit server`: run the CA (flags override the TOML file), and operate on its
database: `eab add / list / revoke`, `ari move`, `certs list / show / revoke`,
`accounts list / show / deactivate`, `orders list`, `db upgrade / current / purge`; `keys` makes
a hierarchy whose intermediate's key is in a PKCS#11 token."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from acmekit.cli.errors import plain_errors
from acmekit.cli.main import log_progress_by_default
from acmekit.protocol.messages import RevocationReason

if TYPE_CHECKING:
    from acmekit.dns.service import DnsConfig
    from acmekit.server.config import HsmSettings, ServerConfig
    from acmekit.server.repos.purge import Due, Walk
    from acmekit.server.store import Store

# `--demo`: the CA and its challenge DNS on one machine, as Pebble ships with its
# challenge test server; the ports are Pebble's (httpPort 5002, tlsPort 5001, 8053).
DEMO_DNS = "127.0.0.1:8053"
DEMO_DNS_API = "127.0.0.1:8055"
DEMO_HTTP01_PORT = 5002
DEMO_TLSALPN01_PORT = 5001
DEMO_NETWORKS = ("127.0.0.0/8", "::1/128")
DEMO_SPECIAL_NAMES = ("test",)
# How many expired rows of each kind `db purge --dry-run` examines at most: its reads,
# and the time it takes beside the requests, stay bounded on a CA that has not purged
# for long (millions of rows due).
PURGE_COUNT_LIMIT = 100_000


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
    "--ct-log-list",
    "ct_log_lists",
    multiple=True,
    metavar="FILE",
    help="log certificates in the CT logs of this Chrome v3 log list, as `acmekit ct` "
    "writes (repeatable; [ct] log_lists)",
)
@click.option(
    "--ct-required-scts",
    type=click.IntRange(0),
    default=None,
    help="SCTs each certificate needs; 0: Chrome's and Apple's policy ([ct] required_scts)",
)
@click.option(
    "--no-auto-upgrade",
    is_flag=True,
    help="refuse to start on an older database schema instead of upgrading it",
)
@click.option(
    "--demo",
    is_flag=True,
    help="a CA for one machine: also serve challenge DNS (every name is 127.0.0.1) on "
    "--demo-dns and validate against it, on loopback, for *.test names; http-01 on port "
    "5002 and tls-alpn-01 on 5001 unless given. Never for production.",
)
@click.option(
    "--demo-dns",
    default=DEMO_DNS,
    show_default=True,
    help="HOST:PORT of the challenge DNS server --demo starts",
)
@click.option(
    "--demo-dns-api",
    default=DEMO_DNS_API,
    show_default=True,
    help="HOST:PORT of its HTTP API (/set-txt, ...; docs/dns.md); '' for none",
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
    ct_log_lists: tuple[str, ...],
    ct_required_scts: int | None,
    no_auto_upgrade: bool,
    demo: bool,
    demo_dns: str,
    demo_dns_api: str,
) -> None:
    """Run the ACME certificate authority."""
    if ctx.invoked_subcommand is not None:
        # An operator command takes the database's options, and --no-auto-upgrade as
        # the start does: given before its name, it is `auto_upgrade = false` (`_store`).
        ctx.ensure_object(dict).update(
            state_dir=state_dir, db=db, config_file=config_file, no_auto_upgrade=no_auto_upgrade
        )
        return
    from acmekit.migrate import SchemaOutOfDate
    from acmekit.server.config import load_config
    from acmekit.server.run import run
    from acmekit.server.schedule import check_profiles
    from acmekit.server.signing import SignerUnavailable
    from acmekit.server.validation.dnssec import ResolverNotValidating

    if demo:
        dns_resolver = dns_resolver or demo_dns
        http01_port = DEMO_HTTP01_PORT if http01_port is None else http01_port
        tlsalpn01_port = DEMO_TLSALPN01_PORT if tlsalpn01_port is None else tlsalpn01_port
        allow_networks = (*allow_networks, *DEMO_NETWORKS)
        allowed_special_names = (*allowed_special_names, *DEMO_SPECIAL_NAMES)
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
                "ct_log_lists": ct_log_lists,
                "ct_required_scts": ct_required_scts,
            },
        )
        config.host_port  # noqa: B018 - validates the listen address early
        if config.state_dir.exists() and not config.state_dir.is_dir():
            raise ValueError(f"--state-dir {config.state_dir} is not a directory")
        # The Baseline Requirements' schedule on today's date (schedule.py): one line.
        check_profiles(config.all_profiles, datetime.now(UTC))
        if config.ct.enabled:  # a log list that does not load stops the start at once
            from acmekit.server.ctsubmit import load_log_lists

            load_log_lists(config.ct.log_lists)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    log_progress_by_default()
    addresses = {"--listen": config.listen, "--crl-listen": config.crl.listen}
    hsm_pin = _hsm_pin(config.hsm)
    if demo:
        addresses |= {"--demo-dns": demo_dns, "--demo-dns-api": demo_dns_api or None}
    try:
        with plain_errors(addresses, config.db_url):
            if demo:
                _run_demo(config, _demo_dns_config(demo_dns, demo_dns_api), hsm_pin)
            else:
                run(config, hsm_pin=hsm_pin)
    except (SchemaOutOfDate, ResolverNotValidating) as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:  # HsmError too: the token, key, PIN or hierarchy files
        raise click.ClickException(str(exc)) from None
    except SignerUnavailable as exc:  # the token went between its check and first use
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


def _hsm_pin(settings: HsmSettings | None) -> str | None:
    if settings is None:
        return None
    from acmekit.server.hsm import HsmError, read_pin

    try:
        return read_pin(settings.pin_file, settings.pin_env, os.environ)
    except HsmError as exc:
        raise click.ClickException(str(exc)) from None


def _demo_dns_config(listen: str, api: str) -> DnsConfig:
    from acmekit.dns.service import DnsConfig
    from acmekit.hostport import parse_host_port

    try:
        host, port = parse_host_port(listen)
        api_host, api_port = parse_host_port(api) if api else (None, 0)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return DnsConfig(
        listen_host=host,
        listen_port=port,
        api_host=api_host,
        api_port=api_port,
        default_ipv4="127.0.0.1",
    )


def _run_demo(config: ServerConfig, dns_config: DnsConfig, hsm_pin: str | None) -> None:
    """The CA and `acmekit dns --default-ipv4 127.0.0.1` in one process, on one loop."""
    import asyncio

    from acmekit.dns.service import DnsService
    from acmekit.server.run import serve

    async def both() -> None:
        service = DnsService(dns_config)
        await service.start()
        click.echo(service.banner())
        click.echo(
            f"demo: validating through that DNS, http-01 on port {config.http01_port}, "
            f"tls-alpn-01 on port {config.tlsalpn01_port}, names under .test; not for production"
        )
        try:
            await serve(config, hsm_pin=hsm_pin)
        finally:
            await service.stop()

    try:
        import uvloop
    except ImportError:
        asyncio.run(both())
    else:
        uvloop.run(both())


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
    return _operator_config(state_dir, db, config_file, create=create).db_url


def _given_config_file(config_file: Path | None) -> Path | None:
    """The TOML file named after the subcommand's name, or before it."""
    given = click.get_current_context().find_object(dict) or {}
    found: Path | None = config_file or given.get("config_file")
    return found


def _operator_config(
    state_dir: Path | None, db: str | None, config_file: Path | None, *, create: bool = False
) -> ServerConfig:
    """The server's configuration as these options (given before or after the
    subcommand's name) and its TOML file make it, for a CA database that exists."""
    from acmekit.server.config import load_config

    given = click.get_current_context().find_object(dict) or {}
    try:
        config = load_config(
            _given_config_file(config_file),
            {
                "state_dir": state_dir or given.get("state_dir"),
                "db": db or given.get("db"),
                "auto_upgrade": False if given.get("no_auto_upgrade") else None,
            },
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
    return config


@contextmanager
def _store(
    state_dir: Path | None, db: str | None, config_file: Path | None, *, create: bool = False
) -> Iterator[Store]:
    from acmekit.migrate import SchemaOutOfDate
    from acmekit.server.store import Store

    config = _operator_config(state_dir, db, config_file, create=create)
    url = config.db_url
    with plain_errors({}, url):
        # As a start of the CA: configured not to upgrade (`auto_upgrade = false`), the
        # schema is changed by `db upgrade` only, never under the CA's running processes.
        try:
            store = Store.from_url(url, config.auto_upgrade)
        except SchemaOutOfDate as exc:
            raise click.ClickException(str(exc)) from None
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


# A command whose argument is an id: random base64url ids begin with "-" one time in 64
# (`secrets.token_urlsafe`), which click would read as an unknown option. These commands
# have no short options, so every token that begins with "-" and names no option of
# theirs is the id, whole.
_ID_ARGUMENT = {"ignore_unknown_options": True}


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


@eab.command("revoke", context_settings=_ID_ARGUMENT)
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


# At most this many; more than the databases' LIMIT holds (a 64-bit integer) is as many
# as there are, not an overflow.
_LIMIT = click.option(
    "--limit",
    type=click.IntRange(1),
    callback=lambda _ctx, _param, value: min(value, 2**63 - 1),
    default=100,
    show_default=True,
    help="at most this many",
)


def _echo_json(value: Any) -> None:
    import json

    click.echo(json.dumps(value, indent=2, sort_keys=True))


@server.group()
def certs() -> None:
    """Issued certificates: list, show, revoke (the next CRL lists a revocation)."""


@certs.command("list")
@click.option("--name", default=None, help="only certificates with this name (exact)")
@click.option("--account", "account_id", default=None, help="only this account's")
@click.option(
    "--expiring-within",
    default=None,
    metavar="DURATION",
    help="only unexpired ones that expire within this long, e.g. 7d, 12h",
)
@click.option(
    "--revoked/--unrevoked", "revoked", default=None, help="only revoked, or only unrevoked"
)
@_LIMIT
@click.option("--json", "as_json", is_flag=True, help="a JSON array instead of lines")
@_database_options
def certs_list(
    name: str | None,
    account_id: str | None,
    expiring_within: str | None,
    revoked: bool | None,
    limit: int,
    as_json: bool,
    state_dir: Path | None,
    db: str | None,
    config_file: Path | None,
) -> None:
    """Newest first, one a line: serial (hex), notAfter, status (valid, revoked:REASON
    or expired), account, names; separated by tabs."""
    from acmekit.server.admin import certificate_json, certificate_line, list_certificates
    from acmekit.server.repos.inspect import CertificateFilter
    from acmekit.settings import parse_duration

    now = datetime.now(UTC)
    before = None
    if expiring_within is not None:
        try:
            before = now + parse_duration(expiring_within)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expiring-within") from None
        except OverflowError:  # past the year 9999
            too_long = f"{expiring_within!r} is too long a duration"
            raise click.BadParameter(too_long, param_hint="--expiring-within") from None
    where = CertificateFilter(
        name=None if name is None else _name_wanted(name.strip()),
        account_id=account_id,
        expiring_before=before,
        revoked=revoked,
        limit=limit,
    )
    with _store(state_dir, db, config_file) as store:
        found = list_certificates(store, where, now)
    if as_json:
        _echo_json([certificate_json(rec, now) for rec in found])
        return
    for rec in found:
        click.echo(certificate_line(rec, now))


def _name_wanted(name: str) -> str:
    """`--name` as certificates store it: an IP address in its canonical form, a DNS
    name lower-cased once it is checked as a dns identifier is (a non-ASCII one folded
    into another: the Kelvin sign, U+212A, to "k")."""
    import ipaddress

    from acmekit.protocol.dnslabels import operator_name

    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    try:
        return operator_name("--name", name, wildcard=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--name: "), param_hint="--name") from None


@certs.command("show")
@click.argument("serial")
@click.option("--pem", "with_pem", is_flag=True, help="and the certificate chain in PEM")
@_database_options
def certs_show(
    serial: str, with_pem: bool, state_dir: Path | None, db: str | None, config_file: Path | None
) -> None:
    """Every field of the certificate with this serial (hex; colons allowed)."""
    from acmekit.server.admin import certificate_pem, describe_certificate, find_certificate

    with _store(state_dir, db, config_file) as store, _admin_errors():
        rec = find_certificate(store, serial)
        lines = describe_certificate(store, rec, datetime.now(UTC))
    for line in lines:
        click.echo(line)
    if with_pem:
        click.echo(certificate_pem(rec).rstrip("\n"))


@certs.command("revoke")
@click.argument("serial")
@click.option(
    "--reason",
    required=True,
    type=click.Choice(RevocationReason.SUBSCRIBER_NAMES),
    help="RFC 5280 reason; keyCompromise also blocks the certificate's key",
)
@_database_options
def certs_revoke(
    serial: str, reason: str, state_dir: Path | None, db: str | None, config_file: Path | None
) -> None:
    """Revoke a certificate as an ACME revocation does, and remake its CRL shard (of
    as many shards as the serving CA recorded at its last start)."""
    from acmekit.server.admin import AdminError, remake_crl, revoke_certificate

    given = _given_config_file(config_file)
    config = _operator_config(state_dir, db, config_file)
    with _store(state_dir, db, config_file) as store:
        with _admin_errors():
            rec = revoke_certificate(store, serial, reason, datetime.now(UTC))
        click.echo(f"revoked: {rec.serial} ({reason})")
        if reason == "keyCompromise":
            click.echo("key blocked: no order may use it again")
        shards, source = _crl_shards(store, config.crl.shards, given)
        try:
            shard = remake_crl(config, store, rec.serial, datetime.now(UTC), shards)
        except AdminError as exc:
            every = int(config.crl.regenerate_every.total_seconds())
            click.echo(f"warning: {exc}; the CA's next CRL lists it (within {every} s)", err=True)
        else:
            click.echo(f"crl: shard {shard} of {shards} remade ({source})")


def _crl_shards(store: Store, configured: int, given: object) -> tuple[int, str]:
    """The number of CRL shards to remake one of, and where it came from: the serving
    CA's (`crl.recorded_shards`), whatever this command's file says, since a CRL of
    another count would list another shard's entries under the CA's URL; without a
    record (no CA of this release started on the database), the configured one."""
    from acmekit.server.crl import recorded_shards

    recorded = recorded_shards(store)
    if recorded is None:
        where = f"from {given}" if given else "the default: no CA start recorded"
        return configured, where
    if given and recorded != configured:
        click.echo(
            f"warning: {given} has [crl] shards = {configured}, but the CA serves "
            f"{recorded}: the CA's shard is remade",
            err=True,
        )
    return recorded, "as the CA recorded at its last start"


@server.group()
def accounts() -> None:
    """ACME accounts: list, show, deactivate."""


@accounts.command("list")
@click.option("--contact", default=None, help="only accounts whose contact holds this text")
@_LIMIT
@_database_options
def accounts_list(
    contact: str | None,
    limit: int,
    state_dir: Path | None,
    db: str | None,
    config_file: Path | None,
) -> None:
    """Newest first, one a line: id, status, created, contacts; separated by tabs."""
    from acmekit.server.admin import account_line
    from acmekit.server.repos.inspect import list_accounts

    with _store(state_dir, db, config_file) as store:
        found = list_accounts(store.db, contact, limit)
    for account in found:
        click.echo(account_line(account))


@accounts.command("show", context_settings=_ID_ARGUMENT)
@click.argument("account_id", metavar="ID")
@_database_options
def accounts_show(
    account_id: str, state_dir: Path | None, db: str | None, config_file: Path | None
) -> None:
    """Status, contact, creation, key thumbprint, and counts of orders and certificates."""
    from acmekit.server.admin import describe_account, find_account

    with _store(state_dir, db, config_file) as store, _admin_errors():
        lines = describe_account(store, find_account(store, account_id), datetime.now(UTC))
    for line in lines:
        click.echo(line)


@accounts.command("deactivate", context_settings=_ID_ARGUMENT)
@click.argument("account_id", metavar="ID")
@_database_options
def accounts_deactivate(
    account_id: str, state_dir: Path | None, db: str | None, config_file: Path | None
) -> None:
    """Deactivate an account (RFC 8555 §7.3.6): its key's requests are refused from then
    on, and its pending authorizations are deactivated."""
    from acmekit.server.admin import deactivate_account

    with _store(state_dir, db, config_file) as store, _admin_errors():
        count = deactivate_account(store, account_id, datetime.now(UTC))
    click.echo(f"deactivated: {account_id} ({count} pending authorizations deactivated)")


@server.group()
def orders() -> None:
    """An account's orders."""


@orders.command("list")
@click.option("--account", "account_id", required=True, help="the account's id")
@_LIMIT
@_database_options
def orders_list(
    account_id: str, limit: int, state_dir: Path | None, db: str | None, config_file: Path | None
) -> None:
    """Newest first, one a line: id, status, created, expires, names; separated by tabs."""
    from acmekit.server.admin import list_orders

    with _store(state_dir, db, config_file) as store, _admin_errors():
        found = list_orders(store, account_id, limit, datetime.now(UTC))
    for line in found:
        click.echo(line.text())


@server.group("db")
def db_group() -> None:
    """The CA database: upgrade its schema, show its revision, purge what expired."""


@db_group.command("upgrade")
@_database_options
def db_upgrade(state_dir: Path | None, db: str | None, config_file: Path | None) -> None:
    """Upgrade the database to this acmekit's schema (a server start does it too); a new
    one is made, for a CA that starts with --no-auto-upgrade."""
    from acmekit import migrate

    url = _db_url(state_dir, db, config_file, create=True)
    with plain_errors({}, url):
        click.echo(migrate.upgrade_report(url, migrate.SERVER))


@db_group.command("current")
@_database_options
def db_current(state_dir: Path | None, db: str | None, config_file: Path | None) -> None:
    """Show the database's schema revision and the one this acmekit needs."""
    from acmekit import migrate

    url = _db_url(state_dir, db, config_file)
    with plain_errors({}, url):
        click.echo(migrate.current_report(url, migrate.SERVER))


@db_group.command("purge")
@click.option("--dry-run", is_flag=True, help="count what is due, delete nothing")
@click.option(
    "--count-limit",
    type=click.IntRange(min=1),
    default=None,
    help=f"with --dry-run, examine at most this many expired rows of each kind "
    f"[default: {PURGE_COUNT_LIMIT}]",
)
@_database_options
def db_purge(
    dry_run: bool,
    count_limit: int | None,
    state_dir: Path | None,
    db: str | None,
    config_file: Path | None,
) -> None:
    """Delete every expired order, authorization (with its challenges) and full rate-limit
    bucket that is due under `[purge]` (docs/server.md), a batch at a time, and print how
    many of each; --dry-run prints the counts only, counted over at most --count-limit
    rows of each kind ("at least" where it stopped there). Certificates, CRLs, accounts
    and keys are never deleted. The grace and retention are the --config file's; without
    one, those the server recorded at its last start; printed with where they came from."""
    from acmekit.server.purge import Purger, recorded_settings
    from acmekit.settings import span

    if count_limit is not None and not dry_run:  # a purge deletes all that is due
        raise click.UsageError("--count-limit goes with --dry-run: a purge deletes all that is due")
    count_limit = count_limit or PURGE_COUNT_LIMIT
    given = _given_config_file(config_file)
    config = _operator_config(state_dir, db, config_file)
    with _store(state_dir, db, config_file) as store:
        settings = config.purge_settings()
        source = f"from {given}"
        if given is None:
            found = recorded_settings(store, settings)
            if found is not None:
                settings, source = found, "as the server recorded at its last start"
            else:
                source = (
                    "defaults: no server start recorded; --config must name the server's TOML file"
                )
        click.echo(
            f"grace {span(settings.grace.total_seconds())}, retention "
            f"{span(settings.retention.total_seconds())} ({source})"
        )
        # The real clock: the server's rate limiter judges buckets by the database's.
        purger = Purger(store, settings, lambda: datetime.now(UTC), database_clock=True)
        if not dry_run:
            click.echo(f"deleted: {_due_counts(purger.everything())}")
            return
        counted = purger.due(count_limit)
    click.echo(f"due: {_due_counts(counted.counted, counted.at_least)}")
    if counted.at_least:
        click.echo(
            f"(counted over the first {count_limit} expired rows of each kind: the purge "
            "deletes all that are due; --count-limit counts further)"
        )


def _due_counts(due: Due, at_least: frozenset[Walk] = frozenset()) -> str:
    """`N orders, N authorizations, N challenges, N rate-limit buckets`, each count of a
    walk cut short at the dry run's limit after "at least"."""
    from acmekit.server.repos.purge import Walk

    def count(n: int, walk: Walk, what: str) -> str:
        return f"{'at least ' if walk in at_least else ''}{n} {what}"

    return ", ".join(
        [
            count(due.orders, Walk.ORDERS, "orders"),
            count(due.authorizations, Walk.AUTHORIZATIONS, "authorizations"),
            count(due.challenges, Walk.AUTHORIZATIONS, "challenges"),
            count(due.buckets, Walk.BUCKETS, "rate-limit buckets"),
        ]
    )


# ---------------------------------------------------------------------------------------
# Keys in a token


def _hsm_table(
    module: str, token: str, key: str, pin_file: Path | None, pin_env: str | None
) -> str:
    """The `[hsm]` table, in TOML (basic strings, escaped as TOML asks)."""

    def quoted(text: str) -> str:
        if any(ord(c) < 0x20 or c == "\x7f" for c in text):
            raise click.ClickException(f"{text!r}: control characters are not allowed")
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["[hsm]", f"module = {quoted(module)}", f"token_label = {quoted(token)}"]
    lines.append(f"key_label = {quoted(key)}")
    if pin_file is not None:
        lines.append(f"pin_file = {quoted(str(pin_file.absolute()))}")
    else:
        lines.append(f"pin_env = {quoted(pin_env or '')}")
    return "\n".join(lines) + "\n"


def _add_hsm_table(config_file: Path, table: str) -> None:
    """Append `table` to the server's TOML file (made if missing); refuse one that has
    an [hsm] table already. Appending keeps the operator's comments and order."""
    import tomllib

    from acmekit.files import atomic_write

    text = config_file.read_text(encoding="utf-8") if config_file.exists() else ""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise click.ClickException(f"{config_file}: not valid TOML: {exc}") from None
    if "hsm" in doc:
        raise click.ClickException(f"{config_file} has an [hsm] table already")
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    mode = config_file.stat().st_mode & 0o777 if config_file.exists() else 0o600
    atomic_write(config_file, (text + sep + table).encode("utf-8"), mode)


@server.command("keys")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, help="CA state [state]")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="the server's TOML file: an [hsm] table is added (the file is made if missing)",
)
@click.option("--module", required=True, help="PKCS#11 module (.so) of the token")
@click.option("--token-label", required=True, help="label of the token to make the key in")
@click.option("--key-label", default="acmekit-intermediate", show_default=True)
@click.option(
    "--key-type",
    type=click.Choice(["ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"]),
    default="ec256",
    show_default=True,
)
@click.option(
    "--pin-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="file whose first line is the token's user PIN",
)
@click.option(
    "--pin-env", default=None, metavar="NAME", help="environment variable holding the PIN"
)
@click.option(
    "--root-key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="where the root's private key is written (mode 0600), or read if root.pem exists; "
    "keep it offline [STATE_DIR/root.key]",
)
@click.option(
    "--name", default="acmekit", show_default=True, help="the CA's name in its certificates"
)
def keys(
    state_dir: Path | None,
    config_file: Path,
    module: str,
    token_label: str,
    key_label: str,
    key_type: str,
    pin_file: Path | None,
    pin_env: str | None,
    root_key: Path | None,
    name: str,
) -> None:
    """Make the CA's hierarchy with the intermediate's key in a PKCS#11 token.

    The root (new, or STATE_DIR/root.pem with --root-key) signs an intermediate whose
    key is made in the token, sensitive and not extractable. STATE_DIR gets root.pem and
    intermediate.pem; the server's TOML file gets the [hsm] table that finds the key.
    """
    from acmekit.server.ca import create_external_hierarchy
    from acmekit.server.hsm import HsmError, TokenAddress, generate_key, read_pin

    if (pin_file is None) == (pin_env is None):
        raise click.UsageError("give exactly one of --pin-file and --pin-env")
    given = click.get_current_context().find_object(dict) or {}
    configured = _add_hsm_table_check(config_file) if config_file.exists() else {}
    state = Path(state_dir or given.get("state_dir") or configured.get("state_dir") or "state")
    if (state / "intermediate.pem").exists():
        raise click.ClickException(f"{state} already has an intermediate")
    where = TokenAddress(module, token_label, key_label)
    try:
        pin = read_pin(str(pin_file) if pin_file else None, pin_env, os.environ)
        public = generate_key(where, pin, key_type)
        _, _, created = create_external_hierarchy(
            state, root_key or state / "root.key", public, datetime.now(UTC), name=name
        )
    except (HsmError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _add_hsm_table(config_file, _hsm_table(module, token_label, key_label, pin_file, pin_env))
    click.echo(f"key: {key_label} ({key_type}) in token {token_label}")
    click.echo(f"root: {(state / 'root.pem').absolute()} ({'new' if created else 'existing'})")
    if created:
        click.echo(f"root key: {(root_key or state / 'root.key').absolute()}")
    click.echo(f"intermediate: {(state / 'intermediate.pem').absolute()}")
    click.echo(f"config: [hsm] added to {config_file.absolute()}")


def _add_hsm_table_check(config_file: Path) -> dict[str, Any]:
    """Refuse early (before a key is made) a TOML file that cannot take an [hsm] table;
    the file's settings."""
    import tomllib

    try:
        doc = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise click.ClickException(f"{config_file}: {exc}") from None
    if "hsm" in doc:
        raise click.ClickException(f"{config_file} has an [hsm] table already")
    return doc


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
    from acmekit.server.config import special_names
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
        special = special_names("--allow-special-name", allowed_special_names)
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
        allowed_special_names=special,
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

"""`acmekit fleet`: many sites kept issued, renewed and deployed (see acmekit.fleet)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from acmekit import migrate
from acmekit.cli.errors import PlainErrorsGroup
from acmekit.cli.main import log_progress_by_default
from acmekit.database import create_engine
from acmekit.fleet import planner
from acmekit.fleet.api import delegation, site_json
from acmekit.fleet.capability import DNS01_HINT, DNS01_SETTING, refusal
from acmekit.fleet.cas import CaSpec
from acmekit.fleet.certapi import parse_network
from acmekit.fleet.deploy import parse_edge
from acmekit.fleet.inventory import Inventory, NameTaken
from acmekit.fleet.model import ChallengeMethod, SiteState, normalize_names, to_us
from acmekit.fleet.ondemand import OnDemandPolicy
from acmekit.fleet.persist import site_records
from acmekit.fleet.repos.sites import OptionsChange
from acmekit.fleet.schema import sites
from acmekit.fleet.service import FleetConfig, run
from acmekit.fleet.worker import WorkerConfig
from acmekit.hostport import parse_host_port
from acmekit.migrate import SchemaOutOfDate
from acmekit.protocol.dnspersist import txt_strings
from acmekit.protocol.messages import ascii_lower

DEFAULT_DB = "sqlite:///fleet.db"
BULK_BATCH = 1000


def _hostport(text: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _existing_inventory(db: str) -> Inventory:
    """The inventory at `db`, which must exist: a command that reads sites or acts on
    them, run in the wrong directory, must not leave an empty fleet.db behind."""
    url = make_url(db)
    if url.get_backend_name() == "sqlite":
        found = url.database is not None and Path(url.database).is_file()
        where = str(Path(url.database or "").absolute())
    else:
        engine = create_engine(db)
        try:
            found = sa.inspect(engine).has_table(sites.name)
        finally:
            engine.dispose()
        where = url.render_as_string(hide_password=True)
    if not found:
        raise click.ClickException(
            f"no fleet inventory at {where}; give --db (or ACMEKIT_FLEET_DB), or create "
            "one with `acmekit fleet add NAME` or `acmekit fleet serve`"
        )
    return Inventory.from_url(db)


def _now() -> int:
    return to_us(datetime.now(UTC))


def _db_url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not value.startswith(("sqlite:///", "postgresql://", "postgresql+")):
        raise click.BadParameter(f"{value!r}: use sqlite:///FILE or postgresql://USER@HOST/DB")
    return value


db_option = click.option(
    "--db",
    default=DEFAULT_DB,
    show_default=True,
    envvar="ACMEKIT_FLEET_DB",
    callback=_db_url,
    help="Inventory URL.",
)


@click.group("fleet", cls=PlainErrorsGroup)
def fleet() -> None:
    """Keep certificates for many sites issued, renewed and deployed to every edge."""


CA_KEYS = ("eab-kid", "eab-hmac", "concurrency", "limit", "ca-bundle")


def parse_ca(text: str, ca_bundle: str | None = None) -> CaSpec:
    """`NAME=URL[,eab-kid=K,eab-hmac=H,concurrency=N,limit=N|none,ca-bundle=FILE]`;
    `ca_bundle` is the default for a CA that names none."""
    name, sep, rest = text.partition("=")
    url, *extras = rest.split(",")
    if not sep or not name or not url.startswith(("https://", "http://")):
        raise click.BadParameter(f"expected NAME=URL[,key=value...], got {text!r}")
    found: dict[str, str] = {}
    for extra in extras:
        key, sep, value = extra.partition("=")
        if not sep or key not in CA_KEYS or not value:
            raise click.BadParameter(f"{name}: unknown {extra!r}; keys are {', '.join(CA_KEYS)}")
        found[key] = value
    if ("eab-kid" in found) != ("eab-hmac" in found):
        raise click.BadParameter(f"{name}: give eab-kid and eab-hmac together")
    limit = found.get("limit", "50")
    # ASCII digits only: str.isdigit takes '²' (int() raises) and U+0665 (int() reads 5).
    if not (limit == "none" or (limit.isascii() and limit.isdigit() and int(limit) > 0)):
        raise click.BadParameter(f"{name}: limit is a positive number or none")
    concurrency = found.get("concurrency", "10")
    if not (concurrency.isascii() and concurrency.isdigit()) or int(concurrency) < 1:
        raise click.BadParameter(f"{name}: concurrency is a positive number")
    return CaSpec(
        name=name,
        directory=url,
        eab_kid=found.get("eab-kid"),
        eab_hmac_key=found.get("eab-hmac"),
        concurrency=int(concurrency),
        certificates_per_domain=None if limit == "none" else int(limit),
        ca_bundle=found.get("ca-bundle", ca_bundle),
    )


def _cas(server: str | None, cas: tuple[str, ...], ca_bundle: str | None) -> list[CaSpec]:
    if server and cas:
        raise click.UsageError("give --server or --ca, not both")
    if server:
        return [CaSpec(server, server, ca_bundle=ca_bundle)]
    if not cas:
        raise click.UsageError("give --ca NAME=URL (repeatable) or --server URL")
    specs = [parse_ca(text, ca_bundle) for text in cas]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise click.UsageError(f"CA names must differ: {', '.join(names)}")
    return specs


def _serve(
    options: dict[str, Any],
    listen: str | None,
    http01_listen: str | None,
    serve_api: bool,
) -> None:
    try:
        deployers = [parse_edge(e) for e in options["edges"]]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    resolver = options["dns_resolver"]
    if options.get("ct_log_lists"):
        from acmekit.client.ctlogs import load_log_lists

        try:
            load_log_lists(options["ct_log_lists"])
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        config = _config(options, listen, http01_listen, resolver)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(config, deployers, stop, lambda line: click.echo(line), serve_api)

    log_progress_by_default()
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(main())
        except SchemaOutOfDate as exc:
            raise click.ClickException(str(exc)) from None


def _config(
    options: dict[str, Any], listen: str | None, http01_listen: str | None, resolver: str | None
) -> FleetConfig:
    return FleetConfig(
        db=options["db"],
        cas=_cas(options["server"], options["cas"], options["ca_bundle"]),
        listen=_hostport(listen) if listen else None,
        api_token=options.get("api_token"),
        http01_listen=_hostport(http01_listen) if http01_listen else None,
        dns_api=options["dns_api"],
        dns_api_token=options["dns_api_token"],
        dns_resolver=_hostport(resolver) if resolver else None,
        delegation_zone=options["delegation_zone"],
        alert_hook=options["alert_hook"],
        auto_upgrade=not options["no_auto_upgrade"],
        **_edge_api(options),
        ct_log_lists=tuple(options.get("ct_log_lists") or ()),
        worker=WorkerConfig(
            batch=options["batch"],
            concurrency=options["concurrency"],
            ari_interval=options["ari_interval"] * planner.SECOND,
            lease=options["lease_seconds"] * planner.SECOND,
        ),
    )


def _edge_api(options: dict[str, Any]) -> dict[str, Any]:
    """FleetConfig's certificate endpoint and on-demand fields, from serve's options."""
    found: dict[str, Any] = {}
    listen = options.get("cert_listen")
    patterns, ask = options.get("on_demand") or (), options.get("on_demand_ask")
    if (patterns or ask) and not listen:
        raise click.UsageError("--on-demand and --on-demand-ask need --cert-listen")
    if not listen:
        return found
    found["cert_listen"] = _hostport(listen)
    found["cert_token"] = options.get("cert_token")
    try:
        if options.get("cert_allow"):
            found["cert_allow"] = tuple(parse_network(a) for a in options["cert_allow"])
        if patterns or ask:
            found["on_demand"] = OnDemandPolicy(
                # ASCII ones only: the policy's check then refuses the others, where
                # lower() took the Kelvin sign (U+212A) to "k", another name's pattern.
                patterns=tuple(p.lower() if p.isascii() else p for p in patterns),
                ask=ask,
                per_domain=options["on_demand_per_domain"],
                per_minute=options["on_demand_per_minute"],
            )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return found


zone_option = click.option(
    "--delegation-zone",
    envvar="ACMEKIT_FLEET_DELEGATION_ZONE",
    help="Zone (served by acmekit dns) that customers' _acme-challenge CNAMEs point into.",
)

server_options: list[Callable[[Any], Any]] = [
    db_option,
    click.option(
        "--ca",
        "cas",
        multiple=True,
        metavar="NAME=URL[,eab-kid=K,eab-hmac=H,concurrency=N,limit=N|none,ca-bundle=F]",
        help="An ACME CA, in order of preference (repeatable); concurrency caps its orders "
        "in flight across every worker of the inventory.",
    ),
    click.option("--server", help="ACME directory URL: one CA, named by its URL."),
    click.option(
        "--ca-bundle",
        type=click.Path(dir_okay=False),
        envvar="REQUESTS_CA_BUNDLE",
        help="Root for CAs that name no ca-bundle of their own.",
    ),
    click.option("--edge", "edges", multiple=True, help="DIR[:RELOAD_CMD] (repeatable)."),
    click.option("--dns-api", help="acmekit dns API URL, for dns-01 (wildcards, delegation)."),
    click.option("--dns-api-token", envvar="ACMEKIT_DNS_API_TOKEN", help="Its bearer token."),
    click.option("--dns-resolver", help="HOST:PORT of the resolver for CNAMEs and TXT checks."),
    zone_option,
    click.option("--batch", default=50, show_default=True, type=click.IntRange(min=1),
                 help="Sites one worker leases at a time."),
    click.option("--concurrency", default=20, show_default=True, type=click.IntRange(min=1),
                 help="Sites one worker handles at once."),
    click.option("--ari-interval", default=6 * 3600, show_default=True,
                 type=click.IntRange(min=60), help="Seconds between renewal-information checks."),
    click.option("--lease-seconds", default=15 * 60, show_default=True,
                 type=click.IntRange(min=5),
                 help="How long a worker holds a site; a dead worker's sites wait this long."),
    click.option("--alert-hook", metavar="CMD",
                 help="Shell command run once when a site enters the failing state."),
    click.option("--no-auto-upgrade", is_flag=True,
                 help="Refuse to start on an older inventory schema instead of upgrading it."),
]  # fmt: skip


F = TypeVar("F", bound=Callable[..., Any])


def _with(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def wrap(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return wrap


@fleet.command()
@_with(server_options)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    help="HOST:PORT of the JSON API, /metrics and the status page (/).",
)
@click.option(
    "--api-token",
    envvar="ACMEKIT_FLEET_API_TOKEN",
    help="Bearer token for the API (all but the http-01 path); needed beyond loopback.",
)
@click.option(
    "--http01-listen",
    default="0.0.0.0:80",
    show_default=True,
    help="HOST:PORT of the http-01 responder (edges forward the challenge path here).",
)
@click.option(
    "--cert-listen",
    metavar="HOST:PORT",
    help="Serve certificates to edges that ask at handshake time (Caddy's get_certificate "
    "http URL is http://HOST:PORT/certificate); it hands out private keys: keep it private.",
)
@click.option(
    "--cert-allow",
    multiple=True,
    metavar="CIDR",
    help="Clients allowed on --cert-listen (repeatable; default loopback only).",
)
@click.option(
    "--cert-token",
    envvar="ACMEKIT_FLEET_CERT_TOKEN",
    help="Also require ?token=T on --cert-listen (put it in the URL the edge is given).",
)
@click.option(
    "--on-demand",
    "on_demand",
    multiple=True,
    metavar="PATTERN",
    help="A name seen at an edge may become a site if it matches (NAME, or *.NAME for any "
    "name under NAME; repeatable). Needs --cert-listen.",
)
@click.option(
    "--on-demand-ask",
    metavar="URL",
    help="And if GET URL?domain=NAME answers 200 (as Caddy's on_demand_tls ask).",
)
@click.option(
    "--on-demand-per-domain",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="On-demand sites per registered domain per 7 days, fleet-wide.",
)
@click.option(
    "--on-demand-per-minute",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="On-demand sites per minute, fleet-wide.",
)
@click.option(
    "--ct-log-list",
    "ct_log_lists",
    multiple=True,
    metavar="FILE",
    help="Show each site's CT compliance (status page, /metrics), its SCTs verified "
    "against this Chrome v3 log list (repeatable).",
)
def serve(listen: str, http01_listen: str, **options: Any) -> None:
    """API, status page, http-01 responder and worker in one process."""
    _serve(options, listen, http01_listen, True)


@fleet.command()
@_with(server_options)
def worker(**options: Any) -> None:
    """A worker alone: leases due sites from the inventory and acts on them."""
    _serve(options, None, None, False)


@fleet.command()
@db_option
@click.argument("names", nargs=-1)
@click.option("--method", type=click.Choice([m.value for m in ChallengeMethod]), default="http-01")
@click.option("--from-file", type=click.File("r"), help="One site per line: NAME [NAME ...].")
@click.option("--backup", is_flag=True, help="Keep a backup certificate from a second CA.")
@zone_option
def add(
    db: str,
    names: tuple[str, ...],
    method: str,
    from_file: Any,
    backup: bool,
    delegation_zone: str | None,
) -> None:
    """Add one site with NAMES (its id is printed), or one site per line of --from-file.

    A dns-01 or wildcard site added with --delegation-zone prints, after its id, the
    CNAME record each of its names needs at the customer's DNS provider (such a site is
    refused while the fleet last started without a DNS API, --dns-api); a dns-persist-01
    site, the TXT records to publish once (when the fleet has accounts)."""
    inventory = Inventory.from_url(db)
    try:
        dns01 = inventory.settings.value(DNS01_SETTING) != "no"
        if from_file is not None:
            _bulk_add(inventory, from_file, ChallengeMethod(method), backup, dns01)
        elif names:
            refused = refusal(_names(names), ChallengeMethod(method), dns01)
            if refused is not None:
                raise click.ClickException(f"site not added: {refused}")
            try:
                site = inventory.sites.add_site(_names(names), ChallengeMethod(method), _now())
            except NameTaken as exc:
                raise click.ClickException(str(exc)) from None
            if backup:
                inventory.sites.set_options(site.id, OptionsChange(backup=True))
            click.echo(site.id)
            accounts = inventory.cas.account_urls()
            for record, target in (delegation(site, delegation_zone, accounts) or {}).items():
                click.echo(f"{record} CNAME {target}")
            for txt in site_records(inventory, site) or []:  # dns-persist-01, once known
                strings = " ".join(f'"{s}"' for s in txt_strings(txt["value"]))
                click.echo(f"{txt['name']} IN TXT {strings}")
        else:
            raise click.UsageError("give NAMES or --from-file")
    finally:
        inventory.close()


def _names(names: Any) -> tuple[str, ...]:
    try:
        return normalize_names(names)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _bulk_add(
    inventory: Inventory, lines: Any, method: ChallengeMethod, backup: bool, dns01: bool
) -> None:
    """Import in batches, so memory stays flat however long the file is; the progress
    bar counts bytes read (stdin, whose size is unknown, shows a count only). A line whose
    names another site holds is skipped and named, so the same file can be run again."""
    now, added, number = _now(), 0, 0
    skipped: list[str] = []
    bar: Any
    with click.progressbar(length=_size(lines), label="adding sites") as bar:
        while batch_lines := list(itertools.islice(lines, BULK_BATCH)):
            rows: list[tuple[int, list[str]]] = []
            for text in batch_lines:
                number += 1
                if text.strip() and not text.startswith("#"):
                    refused = refusal(text.split(), method, dns01)
                    if refused is not None:
                        skipped.append(f"line {number}: {refused.split(', and ')[0]}; skipped")
                        continue
                    rows.append((number, text.split()))
            if rows:
                result = inventory.sites.add_sites([_names(r) for _, r in rows], method, now)
                if backup:
                    inventory.sites.set_options_many(result.ids, OptionsChange(backup=True))
                added += len(result.ids)
                skipped += [
                    f"line {rows[c.line][0]}: {c.name} already belongs to site {c.site_id}; skipped"
                    for c in result.conflicts
                ]
            bar.update(sum(len(ln.encode()) for ln in batch_lines))
    for line in skipped:
        click.echo(line, err=True)
    if any("dns-01" in line for line in skipped):
        click.echo(DNS01_HINT, err=True)
    click.echo(f"added {added} sites, skipped {len(skipped)}")


def _size(stream: Any) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size or None
    except (OSError, AttributeError, ValueError):
        return None


def _find(inventory: Inventory, ref: str) -> Any:
    # ASCII ones only lower-cased: the Kelvin sign (U+212A) would find another's site
    site = inventory.sites.site(ref) or inventory.sites.site_by_name(ascii_lower(ref))
    if site is None:
        raise click.ClickException(f"no site {ref!r}")
    return site


@fleet.command()
@db_option
@click.argument("refs", nargs=-1, required=True)
def remove(db: str, refs: tuple[str, ...]) -> None:
    """Stop renewing sites (by id or first name); workers remove them from edges."""
    inventory = _existing_inventory(db)
    try:
        for ref in refs:
            site = _find(inventory, ref)
            inventory.sites.remove_site(site.id, _now())
            click.echo(f"{site.id} {site.name}: removing")
    finally:
        inventory.close()


@fleet.command(name="list")
@db_option
@click.option("--state", type=click.Choice([s.value for s in SiteState]))
@click.option("--limit", default=1000, show_default=True)
def list_sites(db: str, state: str | None, limit: int) -> None:
    """One line per site: id, state, names."""
    inventory = _existing_inventory(db)
    try:
        for site in inventory.sites.page(SiteState(state) if state else None, limit=limit):
            click.echo(f"{site.id} {site.state} {' '.join(site.names)}")
    finally:
        inventory.close()


@fleet.command()
@db_option
@click.argument("ref", required=False)
@zone_option
def status(db: str, ref: str | None, delegation_zone: str | None) -> None:
    """Counts by state, or one site in detail (JSON)."""
    inventory = _existing_inventory(db)
    try:
        if ref is not None:
            found = site_json(inventory, _find(inventory, ref), delegation_zone)
            click.echo(json.dumps(found, indent=2))
            return
        for state, count in inventory.sites.counts_by_state().items():
            click.echo(f"{state}: {count}")
    finally:
        inventory.close()


@fleet.command()
@db_option
@click.argument("ref")
def renew(db: str, ref: str) -> None:
    """Renew a site now (by id or first name)."""
    inventory = _existing_inventory(db)
    try:
        site = _find(inventory, ref)
        if not inventory.sites.force_renewal(site.id, _now()):
            raise click.ClickException(f"{site.id} is {site.desired}")
        click.echo(f"{site.id} {site.name}: renewal due now")
    finally:
        inventory.close()


@fleet.group("db", cls=PlainErrorsGroup)
def db_group() -> None:
    """The inventory's schema: upgrade it, or show its revision."""


@db_group.command("upgrade")
@db_option
def db_upgrade(db: str) -> None:
    """Upgrade the inventory to this acmekit's schema (serve and worker do it on start)."""
    click.echo(migrate.upgrade_report(db, migrate.FLEET))


@db_group.command("current")
@db_option
def db_current(db: str) -> None:
    """Show the inventory's schema revision and the one this acmekit needs."""
    click.echo(migrate.current_report(db, migrate.FLEET))


__all__ = ["fleet"]

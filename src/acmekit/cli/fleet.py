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
from typing import Any, TypeVar

import click

from acmekit.fleet.api import site_json
from acmekit.fleet.deploy import parse_edge
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, SiteState, normalize_names, to_us
from acmekit.fleet.service import FleetConfig, run
from acmekit.fleet.worker import WorkerConfig

DEFAULT_DB = "sqlite:///fleet.db"
BULK_BATCH = 1000


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _now() -> int:
    return to_us(datetime.now(UTC))


db_option = click.option(
    "--db", default=DEFAULT_DB, show_default=True, envvar="ACMEKIT_FLEET_DB", help="Inventory URL."
)


@click.group("fleet")
def fleet() -> None:
    """Keep certificates for many sites issued, renewed and deployed to every edge."""


def _serve(
    db: str,
    server: str,
    ca_bundle: str | None,
    listen: str | None,
    http01_listen: str | None,
    edges: tuple[str, ...],
    serve_api: bool,
) -> None:
    try:
        deployers = [parse_edge(e) for e in edges]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    config = FleetConfig(
        db=db,
        server=server,
        ca_bundle=ca_bundle,
        listen=_hostport(listen) if listen else None,
        http01_listen=_hostport(http01_listen) if http01_listen else None,
        worker=WorkerConfig(),
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(config, deployers, stop, lambda line: click.echo(line), serve_api)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


server_options: list[Callable[[Any], Any]] = [
    db_option,
    click.option("--server", required=True, help="ACME directory URL."),
    click.option("--ca-bundle", type=click.Path(dir_okay=False), envvar="REQUESTS_CA_BUNDLE"),
    click.option("--edge", "edges", multiple=True, help="DIR[:RELOAD_CMD] (repeatable)."),
]


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
    "--http01-listen",
    default="0.0.0.0:80",
    show_default=True,
    help="HOST:PORT of the http-01 responder (edges forward the challenge path here).",
)
def serve(
    db: str,
    server: str,
    ca_bundle: str | None,
    edges: tuple[str, ...],
    listen: str,
    http01_listen: str,
) -> None:
    """API, status page, http-01 responder and worker in one process."""
    _serve(db, server, ca_bundle, listen, http01_listen, edges, True)


@fleet.command()
@_with(server_options)
def worker(db: str, server: str, ca_bundle: str | None, edges: tuple[str, ...]) -> None:
    """A worker alone: leases due sites from the inventory and acts on them."""
    _serve(db, server, ca_bundle, None, None, edges, False)


@fleet.command()
@db_option
@click.argument("names", nargs=-1)
@click.option("--method", type=click.Choice([m.value for m in ChallengeMethod]), default="http-01")
@click.option("--from-file", type=click.File("r"), help="One site per line: NAME [NAME ...].")
def add(db: str, names: tuple[str, ...], method: str, from_file: Any) -> None:
    """Add one site with NAMES, or one site per line of --from-file."""
    inventory = Inventory.from_url(db)
    try:
        if from_file is not None:
            _bulk_add(inventory, from_file, ChallengeMethod(method))
        elif names:
            site = inventory.add_site(_names(names), ChallengeMethod(method), _now())
            click.echo(site.id)
        else:
            raise click.UsageError("give NAMES or --from-file")
    finally:
        inventory.close()


def _names(names: Any) -> tuple[str, ...]:
    try:
        return normalize_names(names)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _bulk_add(inventory: Inventory, lines: Any, method: ChallengeMethod) -> None:
    """Import in batches, so memory stays flat however long the file is; the progress
    bar counts bytes read (stdin, whose size is unknown, shows a count only)."""
    now, added = _now(), 0
    bar: Any
    with click.progressbar(length=_size(lines), label="adding sites") as bar:
        while batch_lines := list(itertools.islice(lines, BULK_BATCH)):
            rows = [ln.split() for ln in batch_lines if ln.strip() and not ln.startswith("#")]
            if rows:
                added += len(inventory.add_sites([_names(r) for r in rows], method, now))
            bar.update(sum(len(ln.encode()) for ln in batch_lines))
    click.echo(f"added {added} sites")


def _size(stream: Any) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size or None
    except (OSError, AttributeError, ValueError):
        return None


def _find(inventory: Inventory, ref: str) -> Any:
    site = inventory.site(ref) or inventory.site_by_name(ref.lower())
    if site is None:
        raise click.ClickException(f"no site {ref!r}")
    return site


@fleet.command()
@db_option
@click.argument("refs", nargs=-1, required=True)
def remove(db: str, refs: tuple[str, ...]) -> None:
    """Stop renewing sites (by id or first name); workers remove them from edges."""
    inventory = Inventory.from_url(db)
    try:
        for ref in refs:
            site = _find(inventory, ref)
            inventory.remove_site(site.id, _now())
            click.echo(f"{site.id} {site.name}: removing")
    finally:
        inventory.close()


@fleet.command(name="list")
@db_option
@click.option("--state", type=click.Choice([s.value for s in SiteState]))
@click.option("--limit", default=1000, show_default=True)
def list_sites(db: str, state: str | None, limit: int) -> None:
    """One line per site: id, state, names."""
    inventory = Inventory.from_url(db)
    try:
        for site in inventory.sites(SiteState(state) if state else None, limit=limit):
            click.echo(f"{site.id} {site.state} {' '.join(site.names)}")
    finally:
        inventory.close()


@fleet.command()
@db_option
@click.argument("ref", required=False)
def status(db: str, ref: str | None) -> None:
    """Counts by state, or one site in detail (JSON)."""
    inventory = Inventory.from_url(db)
    try:
        if ref is not None:
            click.echo(json.dumps(site_json(inventory, _find(inventory, ref)), indent=2))
            return
        for state, count in inventory.counts_by_state().items():
            click.echo(f"{state}: {count}")
    finally:
        inventory.close()


@fleet.command()
@db_option
@click.argument("ref")
def renew(db: str, ref: str) -> None:
    """Renew a site now (by id or first name)."""
    inventory = Inventory.from_url(db)
    try:
        site = _find(inventory, ref)
        if not inventory.force_renewal(site.id, _now()):
            raise click.ClickException(f"{site.id} is {site.desired}")
        click.echo(f"{site.id} {site.name}: renewal due now")
    finally:
        inventory.close()


__all__ = ["fleet"]

"""What goes wrong when a service starts, said in one line with a hint.

The server, the DNS server and the fleet run inside `plain_errors`: a port another
process holds names the address and the flag that moves it; a database that does not
exist or cannot be opened names the database (never its password) and how to fix it.
Both become a click error (`Error: ...`, exit 1); anything else passes through to the
last-resort handler in `main`.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import click
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from acmekit.hostport import parse_host_port

# asyncio's "... bind on address ('HOST', PORT): ..." and our own bind errors alike
_ADDRESS = re.compile(r"\('([^']*)', (\d+)")
_BIND_ERRORS = {
    errno.EADDRINUSE: "is already in use by another process",
    errno.EADDRNOTAVAIL: "is not an address of this machine",
    errno.EACCES: "needs privileges (ports below 1024 do)",
}
# the flags of a command that give an address to listen on, by parameter name
_LISTEN_PARAMS = ("listen", "api", "http01_listen", "crl_listen")


@contextmanager
def plain_errors(addresses: Mapping[str, str | None], db: str | None = None) -> Iterator[None]:
    """Bind and database failures as one line; `addresses` maps each flag (`--listen`)
    to the HOST:PORT it gave, `db` is the database URL in use."""
    try:
        yield
    except OSError as exc:
        # EACCES is a bind failure only with an address: a file may be unreadable too
        named = _ADDRESS.search(str(exc)) is not None
        if exc.errno not in _BIND_ERRORS or (exc.errno == errno.EACCES and not named):
            raise
        raise click.ClickException(bind_message(exc, addresses)) from None
    except sqlalchemy.exc.DBAPIError as exc:
        raise click.ClickException(database_message(exc, db)) from None


def params_addresses(params: Mapping[str, Any]) -> dict[str, str | None]:
    """{flag: HOST:PORT} of a click command's listen parameters."""
    return {
        "--" + name.replace("_", "-"): params[name]
        for name in _LISTEN_PARAMS
        if isinstance(params.get(name), str)
    }


def bind_message(exc: OSError, addresses: Mapping[str, str | None]) -> str:
    what = _BIND_ERRORS.get(exc.errno or 0, exc.strerror or "cannot be bound")
    found = _ADDRESS.search(str(exc))
    if found is None:
        given = ", ".join(f"{flag} {addr}" for flag, addr in addresses.items() if addr)
        return f"cannot listen: {exc.strerror}; check {given or 'the listen addresses'}"
    host, port = found[1], int(found[2])
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    flags = [flag for flag, addr in addresses.items() if _port_of(addr) == port]
    hint = f"; choose another with {' or '.join(flags)}" if flags else ""
    return f"{shown} {what}{hint}"


def _port_of(address: str | None) -> int | None:
    try:
        return parse_host_port(address)[1] if address else None
    except ValueError:
        return None


def database_message(exc: sqlalchemy.exc.DBAPIError, url: str | None) -> str:
    shown = make_url(url).render_as_string(hide_password=True) if url else "the database"
    reason = " ".join(str(exc.orig).split())
    reason = reason.rsplit("FATAL: ", 1)[-1]  # PostgreSQL's own words, without the preamble
    missing = re.search(r'database "([^"]+)" does not exist', reason)
    if missing is not None and url:
        parts = make_url(url)
        where = f"-h {parts.host or 'localhost'} -p {parts.port or 5432} -U {parts.username}"
        return (
            f"the PostgreSQL database {missing[1]!r} does not exist ({shown}); "
            f"create it (createdb {where} {missing[1]}) or give another --db"
        )
    return f"cannot use {shown}: {reason}; check --db"


class PlainErrorsCommand(click.Command):
    """A command whose bind and database failures are `plain_errors`, read from its own
    parameters (`--listen`, `--api`, `--http01-listen`, `--db`)."""

    def invoke(self, ctx: click.Context) -> Any:
        db = ctx.params.get("db")
        with plain_errors(params_addresses(ctx.params), db if isinstance(db, str) else None):
            return super().invoke(ctx)


class PlainErrorsGroup(click.Group):
    """A group whose subcommands are `PlainErrorsCommand`s."""

    command_class = PlainErrorsCommand

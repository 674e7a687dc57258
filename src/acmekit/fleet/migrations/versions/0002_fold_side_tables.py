"""Fold the side tables into their owners

- fleet_site_options (backup, order_ca, next_check, backup_retry_at) become columns of
  fleet_sites; a site without options gets the defaults.
- The `names_indexed` setting, which told v0.1.0 that fleet_names had been filled for
  an inventory made before it, goes: this revision fills fleet_names if it was not,
  once, as part of the upgrade. Sites that already shared a name keep doing so; the
  oldest holds the name, and the clash is logged.

Revision ID: 0002
Revises: 0001
"""

import json
import logging
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger("acmekit.fleet.migrations")

NAMES_INDEXED = "names_indexed"


def _options() -> list[sa.Column[Any]]:
    return [
        sa.Column("backup", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("order_ca", sa.String(255)),
        sa.Column("next_check", sa.BigInteger()),
        sa.Column("backup_retry_at", sa.BigInteger()),
    ]


OPTIONS = [c.name for c in _options()]


def _options_table() -> sa.Table:
    return sa.Table(
        "fleet_site_options",
        sa.MetaData(),
        sa.Column("site_id", sa.String(32), primary_key=True),
        *_options(),
    )


def _sites() -> sa.TableClause:
    return sa.table(
        "fleet_sites",
        sa.column("id"),
        sa.column("names"),
        sa.column("desired"),
        sa.column("created"),
        *(sa.column(name) for name in OPTIONS),
    )


settings = sa.table("fleet_settings", sa.column("name"), sa.column("value"))
names = sa.table("fleet_names", sa.column("name"), sa.column("site_id"))


def upgrade() -> None:
    with op.batch_alter_table("fleet_sites") as batch:
        for column in _options():
            batch.add_column(column)
    options, sites = _options_table(), _sites()
    for name in OPTIONS:
        found = sa.select(options.c[name]).where(options.c.site_id == sites.c.id)
        value: sa.ColumnElement[Any] = found.scalar_subquery()
        if name == "backup":
            value = sa.func.coalesce(value, sa.false())
        op.execute(sites.update().values({name: value}))
    op.drop_table("fleet_site_options")
    _index_names()


def _index_names() -> None:
    """Fill fleet_names for an inventory made before it, unless that was done."""
    bind = op.get_bind()
    if bind.execute(sa.select(settings).where(settings.c.name == NAMES_INDEXED)).first():
        op.execute(settings.delete().where(settings.c.name == NAMES_INDEXED))
        return
    sites = _sites()
    held = {str(n): str(s) for n, s in bind.execute(sa.select(names))}
    query = (
        sa.select(sites.c.id, sites.c.names)
        .where(sites.c.desired == "active")
        .order_by(sites.c.created, sites.c.id)
    )
    rows: list[dict[str, str]] = []
    for site_id, listed in bind.execute(query):
        for key in dict.fromkeys(n.lower() for n in json.loads(listed)):
            if key not in held:
                held[key] = site_id
                rows.append({"name": key, "site_id": site_id})
            elif held[key] != site_id:
                log.warning("sites %s and %s share %s: the first keeps it", held[key], site_id, key)
    if rows:
        op.execute(names.insert().values(rows))


def downgrade() -> None:
    options, sites = _options_table(), _sites()
    options.create(op.get_bind())
    columns = OPTIONS
    chosen = sa.or_(
        sites.c.backup,
        *(sites.c[name].is_not(None) for name in columns if name != "backup"),
    )
    rows = sa.select(sites.c.id, *(sites.c[name] for name in columns)).where(chosen)
    op.execute(options.insert().from_select(["site_id", *columns], rows))
    with op.batch_alter_table("fleet_sites") as batch:
        for name in reversed(columns):
            batch.drop_column(name)
    op.execute(settings.insert().values(name=NAMES_INDEXED, value="1"))

"""Fold the side tables into their owners

The tables v0.1.0 added beside others so that `create_all` could bring an older database
along without an ALTER become columns of the rows they describe:
- authz_profiles.profile      -> authorizations.profile
- renewal_authzs.order_id     -> authorizations.renewal_order_id (the first order carrying
                                 `replaces` that uses it, RFC 9773 §5)
- replacements.order_id       -> certificates.replaced_by (RFC 9773 §5)
- ari_windows.start           -> certificates.ari_window_start (RFC 9773 §4.2)
A side row whose owner is gone has nothing to describe and is dropped.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# (side table, its key column, its value column, owner, owner's new column, its type)
FOLDS: list[tuple[str, str, str, str, str, sa.types.TypeEngine[Any]]] = [
    ("authz_profiles", "authz_id", "profile", "authorizations", "profile", sa.String(64)),
    ("renewal_authzs", "authz_id", "order_id", "authorizations", "renewal_order_id", sa.String(64)),
    ("replacements", "certificate_id", "order_id", "certificates", "replaced_by", sa.String(64)),
    ("ari_windows", "certificate_id", "start", "certificates", "ari_window_start", sa.BigInteger()),
]  # fmt: skip


def _side(name: str, key: str, value: str, kind: sa.types.TypeEngine[Any]) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(key, sa.String(64), primary_key=True),
        sa.Column(value, kind, nullable=False),
    )


def upgrade() -> None:
    for owner in ("authorizations", "certificates"):
        with op.batch_alter_table(owner) as batch:
            for _, _, _, table, column, kind in FOLDS:
                if table == owner:
                    batch.add_column(sa.Column(column, kind, nullable=True))
    for name, key, value, owner, column, kind in FOLDS:
        side = _side(name, key, value, kind)
        target = sa.table(owner, sa.column("id"), sa.column(column))
        found = sa.select(side.c[value]).where(side.c[key] == target.c.id).scalar_subquery()
        op.execute(target.update().values({column: found}))
        op.drop_table(name)


def downgrade() -> None:
    for name, key, value, owner, column, kind in FOLDS:
        side = _side(name, key, value, kind)
        side.create(op.get_bind())
        source = sa.table(owner, sa.column("id"), sa.column(column))
        rows = sa.select(source.c.id, source.c[column]).where(source.c[column].is_not(None))
        op.execute(side.insert().from_select([key, value], rows))
    for owner in ("authorizations", "certificates"):
        with op.batch_alter_table(owner) as batch:
            for _, _, _, table, column, _ in FOLDS:
                if table == owner:
                    batch.drop_column(column)

"""File each revoked certificate under its CRL shard, and index the shards' entries

A revocation remakes the CRL of its certificate's shard (server/crl.py). The shard is
`serial % [crl] shards`, which SQL cannot compute from a hex serial on SQLite, so the
CA writes it into `certificates.crl_shard`, with the number of shards into
`certificates.crl_shards`, before each CRL is made (the revoked rows not filed yet,
found through the index below); a row is filed once, never again.
`ix_certificates_crl_entries` holds only revoked rows and every column a CRL entry
needs: a shard's CRL reads the rows filed under it from the index alone, never another
shard's rows, nor a certificate's PEM.
Rows revoked before this revision are filed by the CA's first CRL after it (no
backfill here: the number of shards is configuration, not schema).

Adding nullable columns without a default changes only the catalog, on either
database; on PostgreSQL under a short lock_timeout, tried again (`ddl_briefly`, as
0010). The index is built CONCURRENTLY there, outside any transaction, as 0012 and 0013
build theirs, so a CA serving during the upgrade goes on reading and writing; a run
interrupted anywhere is run again whole.

Revision ID: 0014
Revises: 0013
"""

from functools import partial

import sqlalchemy as sa
from alembic import op

from acmekit.migrate import build_index_concurrently, ddl_briefly

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_NAME = "ix_certificates_crl_entries"
_COLUMNS = ("crl_shards", "crl_shard")
_ON = (
    "certificates (crl_shards, crl_shard, not_after, serial, revoked_at, revocation_reason) "
    "WHERE revoked_at IS NOT NULL"
)


def upgrade() -> None:
    conn = op.get_bind()
    present = {c["name"] for c in sa.inspect(conn).get_columns("certificates")}
    missing = [
        sa.Column(name, sa.Integer(), nullable=True)
        for name in _COLUMNS
        if name not in present  # there already when a run is run again
    ]
    if conn.dialect.name == "sqlite":
        for column in missing:
            op.add_column("certificates", column)  # no rebuild: ALTER TABLE ADD COLUMN
        op.execute(f"CREATE INDEX IF NOT EXISTS {_NAME} ON {_ON}")
        return
    for column in missing:
        # The catalog only (no default, no rewrite), under a short lock_timeout, tried
        # again while other transactions hold the table (as 0010's column).
        ddl_briefly("certificates", partial(op.add_column, "certificates", column))
    with op.get_context().autocommit_block():  # commits the column first
        build_index_concurrently(conn, _NAME, _ON)


def downgrade() -> None:
    op.drop_index(_NAME, table_name="certificates")
    with op.batch_alter_table("certificates") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)

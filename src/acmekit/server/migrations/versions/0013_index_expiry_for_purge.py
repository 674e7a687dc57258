"""Index authorizations and orders by expiry, for the purge

The purge (server/purge.py, repos/purge.py) deletes, a batch at a time, the
authorizations and the orders that expired some grace period ago, oldest first: each
batch reads the next rows of an index on (expires, id), from where the last batch
stopped, not the whole table. The orders' index holds only orders without a
certificate: an issued order, kept for ever, leaves it when it is issued, so the walk
from the oldest never reads it again.

On PostgreSQL the indexes are built CONCURRENTLY, outside any transaction, as 0012
builds ix_authz_pending: a CA serving during the upgrade goes on reading and writing. A
run interrupted anywhere is run again whole: an index a failed build left invalid is
dropped and built again. On SQLite the run is the runner's one transaction under the
write lock.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

from acmekit.migrate import build_index_concurrently

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_authz_expires": "authorizations (expires, id)",
    "ix_orders_unissued": "orders (expires, id) WHERE certificate_id IS NULL",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name, on in _INDEXES.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {on}")
        return
    with op.get_context().autocommit_block():
        for name, on in _INDEXES.items():
            build_index_concurrently(op.get_bind(), name, on)


def downgrade() -> None:
    op.drop_index("ix_orders_unissued", table_name="orders")
    op.drop_index("ix_authz_expires", table_name="authorizations")

"""Drop ix_orders_account_id, which ix_orders_account_created makes redundant

ix_orders_account_created (account_id, created), from 0008, leads with account_id: every
lookup of an account's orders by account_id alone (the order list's pages, the operator's
counts and listing) is served by it on SQLite and PostgreSQL, so the single-column index
from 0001 only cost every order's insert the upkeep of a second index.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # DROP INDEX needs no table rebuild on SQLite, so no batch mode (as 0008's CREATE).
    op.drop_index("ix_orders_account_id", table_name="orders")


def downgrade() -> None:
    op.create_index("ix_orders_account_id", "orders", ["account_id"], unique=False)

"""Index the orders by account and creation time

- ix_orders_account_created (account_id, created): an account's order list is read in
  pages, newest first (RFC 8555 §7.1.2.1); each page then costs its own rows, not a sort
  of all the account's orders.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_account_created", "orders", ["account_id", "created"])


def downgrade() -> None:
    op.drop_index("ix_orders_account_created", table_name="orders")

"""The shared record store: serial, records, changes

Revision ID: 0001
Revises:
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dns_serial",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "dns_records",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("rtype", sa.String(16), nullable=False),
        sa.Column("rdata", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_dns_records_name", "dns_records", ["name"])
    op.create_table(
        "dns_changes",
        sa.Column("serial", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("added", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("rtype", sa.String(16), nullable=False),
        sa.Column("rdata", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("serial", "position"),
    )
    # the first serial is the time, as an empty in-memory store's is (dns/service.py), so
    # secondaries that followed such a store before see a higher serial here
    serial = sa.table("dns_serial", sa.column("id", sa.Integer), sa.column("serial", sa.BigInteger))
    op.bulk_insert(serial, [{"id": 1, "serial": int(time.time())}])


def downgrade() -> None:
    op.drop_table("dns_changes")
    op.drop_index("ix_dns_records_name", table_name="dns_records")
    op.drop_table("dns_records")
    op.drop_table("dns_serial")

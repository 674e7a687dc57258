"""Per TSIG key, the latest Time Signed accepted: refusing replayed UPDATEs everywhere

RFC 8945 §5.2.3: a server SHOULD refuse (BADTIME) a request signed earlier than the
key's latest accepted one. With several processes on one database, a request replayed
to another process than the one that took it must be refused there too.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dns_tsig_times",
        sa.Column("key_name", sa.String(255), autoincrement=False, nullable=False),
        sa.Column("time_signed", sa.BigInteger(), nullable=False),
        sa.Column("macs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key_name"),
    )


def downgrade() -> None:
    op.drop_table("dns_tsig_times")

"""Per TSIG key, the MACs of the UPDATEs accepted: refusing replayed UPDATEs everywhere

RFC 8945 §5.2.3: a request accepted once is refused (BADTIME) if it comes again while
its Time Signed is within the fudge. With several processes on one database, a request
replayed to another process than the one that took it must be refused there too. A row
lives until `valid_until` (Time Signed plus the request's fudge), after which the time
check refuses the request anyway.

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
        sa.Column("mac", sa.String(64), autoincrement=False, nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_name", "mac"),
    )


def downgrade() -> None:
    op.drop_table("dns_tsig_times")

"""Multi-perspective corroboration on authorizations

authorizations.mpic_quorum ("3/4") and authorizations.mpic_perspectives (JSON: each
remote perspective's name, RIR, outcome and why it failed), BR §3.2.2.9.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.add_column(sa.Column("mpic_quorum", sa.String(16), nullable=True))
        batch.add_column(sa.Column("mpic_perspectives", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.drop_column("mpic_perspectives")
        batch.drop_column("mpic_quorum")

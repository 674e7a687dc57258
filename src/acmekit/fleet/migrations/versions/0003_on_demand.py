"""On-demand sites

- fleet_on_demand: one row per site made from a name seen at an edge, with its
  registered domain, so that every fleet process counts the same limits.

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
        "fleet_on_demand",
        sa.Column("site_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
    )
    op.create_index("fleet_on_demand_domain_created", "fleet_on_demand", ["domain", "created"])
    op.create_index("fleet_on_demand_created", "fleet_on_demand", ["created"])


def downgrade() -> None:
    op.drop_table("fleet_on_demand")

"""Whether the validation's DNS answers were DNSSEC-authenticated

authorizations.dnssec_dcv and authorizations.dnssec_caa: True when every answer the
challenge's lookups (dnssec_dcv) or the CAA lookups (dnssec_caa) relied on came back with
the AD bit from the validating resolver, False when one did not (an unsigned zone), NULL
when not asked (`[validation] dnssec = "off"`, no DNS lookup, or a validation made before
this revision).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.add_column(sa.Column("dnssec_dcv", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("dnssec_caa", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.drop_column("dnssec_caa")
        batch.drop_column("dnssec_dcv")

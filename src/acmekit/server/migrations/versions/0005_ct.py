"""Certificate Transparency: a certificate's precertificate, kept from signing on

- certificates.precert: the DER of the precertificate (RFC 6962 §3.1) signed for the
  serial, stored before it is sent to any log. A reservation that has one is an issued
  precertificate: a process that takes over a stalled issuance resumes from it (the same
  serial, the same SCTs from the logs) instead of abandoning the serial, and it can be
  revoked (it then appears on the CRLs, as every issued serial). NULL with CT off and
  for certificates issued before this revision.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("precert", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("precert")

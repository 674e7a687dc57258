"""Keep the thumbprints of replaced account keys

- account_prior_keys (account_id, thumbprint, replaced): written by a key change
  (RFC 8555 §7.3.5), read by dns-persist-01 validation, which must accept a record made
  with a key the account used before (draft-ietf-acme-dns-persist-02 §4.2). Key changes
  made before this revision left nothing to keep.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_prior_keys",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("thumbprint", sa.String(64), primary_key=True),
        sa.Column("replaced", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("account_prior_keys")

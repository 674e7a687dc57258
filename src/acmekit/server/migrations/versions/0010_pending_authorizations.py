"""Record which challenge decided an authorization, and index the undecided ones

authorizations.decided_by: the id of the challenge whose validation came out valid or
invalid, NULL while none has. An authorization's status is derived from its challenges
(RFC 8555 §7.1.6) and its stored status stays "pending" after one is met, so the
account's pending count (the pending-authorizations rate limit, on every newOrder that
adds authorizations) probed the challenges of every authorization the account ever had.
Existing rows are filled in from their challenges.

ix_authz_pending (account_id, expires) WHERE stored_status = 'pending' AND decided_by IS
NULL: the count and first expiry read only the account's undecided authorizations.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# As the code of this revision writes it (server/schema.py's UNDECIDED).
_UNDECIDED = "stored_status = 'pending' AND decided_by IS NULL"
_DECIDING = "c.authz_id = authorizations.id AND c.status IN ('valid', 'invalid')"


def upgrade() -> None:
    # A nullable column: ALTER TABLE ADD COLUMN on SQLite, no rebuild.
    with op.batch_alter_table("authorizations") as batch:
        batch.add_column(sa.Column("decided_by", sa.String(64), nullable=True))
    # One challenge at most is ever decided (one attempt an authorization); MIN picks
    # one should an older database hold two.
    op.execute(
        "UPDATE authorizations SET decided_by = "
        f"(SELECT MIN(c.id) FROM challenges c WHERE {_DECIDING}) "
        f"WHERE EXISTS (SELECT 1 FROM challenges c WHERE {_DECIDING})"
    )
    # After the fill: the index is built once, of the undecided rows only.
    op.create_index(
        "ix_authz_pending",
        "authorizations",
        ["account_id", "expires"],
        sqlite_where=sa.text(_UNDECIDED),
        postgresql_where=sa.text(_UNDECIDED),
    )


def downgrade() -> None:
    # The index first: SQLite's rebuild of the table for the column would carry it.
    op.drop_index("ix_authz_pending", table_name="authorizations")
    with op.batch_alter_table("authorizations") as batch:
        batch.drop_column("decided_by")

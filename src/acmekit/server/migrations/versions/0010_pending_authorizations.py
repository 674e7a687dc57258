"""Record which challenge decided an authorization

authorizations.decided_by: the id of the challenge whose validation came out valid or
invalid, NULL while none has. An authorization's status is derived from its challenges
(RFC 8555 §7.1.6) and its stored status stays "pending" after one is met, so the
account's pending count (the pending-authorizations rate limit, on every newOrder that
adds authorizations) probed the challenges of every authorization the account ever had.

The column alone, in a transaction of its own: a nullable column without a default is a
change of the catalog on PostgreSQL and of the schema's text on SQLite, so the lock it
takes on authorizations is short. On PostgreSQL that lock waits for the transactions
already on the table and queues every later request behind it: it is asked for under a
short lock_timeout, again after a pause (`migrate.ddl_briefly`). 0011 makes the
database name the deciding challenge whoever writes the outcome; 0012 fills the existing
rows and indexes the undecided ones.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from acmekit.migrate import ddl_briefly

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    column = sa.Column("decided_by", sa.String(64), nullable=True)
    if op.get_bind().dialect.name == "postgresql":
        ddl_briefly("authorizations", lambda: op.add_column("authorizations", column))
        return
    # A nullable column: ALTER TABLE ADD COLUMN on SQLite, no rebuild.
    with op.batch_alter_table("authorizations") as batch:
        batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("authorizations") as batch:
        batch.drop_column("decided_by")

"""Fill `decided_by` from the challenges and index the undecided authorizations

Existing rows get `decided_by` from their challenges (the least id of the valid or
invalid ones, as the inserts name it). Then ix_authz_pending (account_id, expires) WHERE
stored_status = 'pending' AND decided_by IS NULL: the count and first expiry read only
the account's undecided authorizations.

On PostgreSQL neither holds a lock on authorizations for longer than a batch, so a CA
serving during the upgrade (an older release's processes) goes on reading and writing:
the fill updates `fill_batch` rows a transaction, in the order of their ids, each batch
committed (outcomes recorded meanwhile are named by 0011's trigger); the index is built
CONCURRENTLY, outside any transaction. A run interrupted anywhere is run again whole: the
fill skips the rows named already, an index a failed build left invalid is dropped and
built again. On SQLite the run is the runner's one transaction under the write lock
(readers of the WAL go on; writers wait, up to their busy timeout): a batch's commit
would let a second process's upgrade in (docs/decisions.md, "The upgrade on a live CA").

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import context, op

from acmekit.migrate import build_index_concurrently

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# As the code of this revision writes it (server/schema.py's UNDECIDED).
_UNDECIDED = "stored_status = 'pending' AND decided_by IS NULL"
_DECIDING = "c.authz_id = authorizations.id AND c.status IN ('valid', 'invalid')"
# One challenge at most is ever decided (one attempt an authorization); MIN picks one
# should an older database hold two. Rows named already are left as they are.
_FILL = (
    "UPDATE authorizations SET decided_by = "
    f"(SELECT MIN(c.id) FROM challenges c WHERE {_DECIDING}) "
    f"WHERE decided_by IS NULL AND EXISTS (SELECT 1 FROM challenges c WHERE {_DECIDING})"
)
# The last id of the next batch (the primary key's index, from the last id filled).
_BATCH_END = (
    "SELECT MAX(id) FROM (SELECT id FROM authorizations WHERE id > :after "
    "ORDER BY id LIMIT :n) AS batch"
)
_NAME = "ix_authz_pending"
_ON = f"authorizations (account_id, expires) WHERE {_UNDECIDED}"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_FILL)
        op.execute(f"CREATE INDEX IF NOT EXISTS {_NAME} ON {_ON}")
        return
    size = int(context.config.attributes.get("fill_batch", 5000))
    with op.get_context().autocommit_block():
        _fill_in_batches(op.get_bind(), size)
        build_index_concurrently(op.get_bind(), _NAME, _ON)


def _fill_in_batches(conn: sa.Connection, size: int) -> None:
    """Each batch its own transaction (the connection autocommits). A row inserted
    behind the batches was inserted undecided (no release inserts a challenge decided
    already), and its outcome is named by the trigger."""
    after = ""
    while True:
        end = conn.execute(sa.text(_BATCH_END), {"after": after, "n": size}).scalar()
        if end is None:
            return
        conn.execute(
            sa.text(f"{_FILL} AND id > :after AND id <= :end"), {"after": after, "end": end}
        )
        after = end


def downgrade() -> None:
    # Before 0010's drops the column: SQLite's rebuild of the table would carry it.
    op.drop_index("ix_authz_pending", table_name="authorizations")

"""Index authorizations and orders by expiry, for the purge

The purge (server/purge.py, repos/purge.py) deletes, a batch at a time, the
authorizations and the orders that expired some grace period ago, oldest first: each
batch reads the next rows of an index on (expires, id), from where the last batch
stopped, not the whole table. The orders' index holds only orders without a
certificate: an issued order, kept for ever, leaves it when it is issued, so the walk
from the oldest never reads it again.

On PostgreSQL the indexes are built CONCURRENTLY, outside any transaction, as 0012
builds ix_authz_pending: a CA serving during the upgrade goes on reading and writing. A
run interrupted anywhere is run again whole: an index a failed build left invalid is
dropped and built again. On SQLite the run is the runner's one transaction under the
write lock.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_authz_expires": "authorizations (expires, id)",
    "ix_orders_unissued": "orders (expires, id) WHERE certificate_id IS NULL",
}

# As 0012: the sessions waiting inside pg_advisory_lock for the runner's key (an older
# release's starts), each of which would fail anyway on a revision it does not know.
_CANCEL_WAITERS = (
    "SELECT pg_cancel_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' "
    "AND NOT l.granted AND l.objsubid = 1 AND l.classid::bigint = :hi "
    "AND l.objid::bigint = :lo "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_DEADLOCK = "40P01"
_BUILD_TRIES = 5


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name, on in _INDEXES.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {on}")
        return
    lock_key = int(context.config.attributes["lock_key"])
    with op.get_context().autocommit_block():
        for name, on in _INDEXES.items():
            _build_index(op.get_bind(), lock_key, name, on)


def _build_index(conn: sa.Connection, lock_key: int, name: str, on: str) -> None:
    """CREATE INDEX CONCURRENTLY, again after a deadlock with a session waiting for the
    runner's advisory lock (0012's `_build_index` says why), or where an interrupted run
    left the index invalid."""
    key = {"hi": lock_key >> 32, "lo": lock_key & 0xFFFFFFFF}
    for tries_left in reversed(range(_BUILD_TRIES)):
        conn.execute(sa.text(_CANCEL_WAITERS), key).all()
        valid = conn.execute(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"),
            {"n": name},
        ).scalar()
        if valid is False:
            conn.execute(sa.text(f"DROP INDEX CONCURRENTLY {name}"))
        try:
            conn.execute(sa.text(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {on}"))
            return
        except sa.exc.DBAPIError as exc:
            if tries_left == 0 or getattr(exc.orig, "sqlstate", None) != _DEADLOCK:
                raise


def downgrade() -> None:
    op.drop_index("ix_orders_unissued", table_name="orders")
    op.drop_index("ix_authz_expires", table_name="authorizations")

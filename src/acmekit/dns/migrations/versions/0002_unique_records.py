"""One row per record: a digest of (name, type, rdata) with a unique index

Two processes adding the same record at once each decided on their own view (caught up
just before), then both inserted it. The index makes the second insert a no-op
(INSERT ... ON CONFLICT DO NOTHING, acmekit.dns.shared); duplicates already stored are
dropped here, the earliest kept. The digest, not the rdata itself, is indexed: a TXT
record's rdata can pass PostgreSQL's limit on a B-tree entry.

Revision ID: 0002
Revises: 0001
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _digest(name: str, rtype: str, rdata: str) -> str:
    # the same as acmekit.dns.shared.record_digest, kept here as the migration's own
    return hashlib.sha256(f"{name}\0{rtype}\0{rdata}".encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("dns_records") as batch:
        batch.add_column(sa.Column("digest", sa.String(64), nullable=True))
    conn = op.get_bind()
    table = sa.table(
        "dns_records",
        sa.column("seq", sa.BigInteger),
        sa.column("name", sa.String),
        sa.column("rtype", sa.String),
        sa.column("rdata", sa.Text),
        sa.column("digest", sa.String),
    )
    seen: set[str] = set()
    rows = conn.execute(sa.select(table).order_by(table.c.seq)).all()
    for row in rows:
        digest = _digest(row.name, row.rtype, row.rdata)
        if digest in seen:
            conn.execute(table.delete().where(table.c.seq == row.seq))
            continue
        seen.add(digest)
        conn.execute(table.update().where(table.c.seq == row.seq).values(digest=digest))
    with op.batch_alter_table("dns_records") as batch:
        batch.alter_column("digest", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_dns_records_digest", ["digest"])


def downgrade() -> None:
    with op.batch_alter_table("dns_records") as batch:
        batch.drop_constraint("uq_dns_records_digest", type_="unique")
        batch.drop_column("digest")

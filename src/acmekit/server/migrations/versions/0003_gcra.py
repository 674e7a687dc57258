"""Rate-limit buckets as one GCRA TAT each; a challenge keeps its client's account URL

- rate_buckets (key, tokens, updated, version) -> (key, tat): the token bucket's state
  becomes the GCRA "theoretical arrival time" (server/ratelimits.py). A bucket that held
  `tokens` at `updated` is full again at `updated + (burst - tokens) * T`, T being the
  limit's emission interval (period / burst). The rates are configuration, which a
  migration cannot read: the conversion uses Let's Encrypt's figures, the defaults
  (frozen here as they were when this revision was written). A bucket whose limit was
  configured otherwise (or overridden) is converted at the default rate and is right
  again within one period; a key that names no limit is dropped (nothing reads it).
  Downgrading writes each bucket as empty at `tat - burst * T`, the same refill line,
  so a bucket holds the same tokens at any later time either way.
- challenges.account_uri: the account URL the client used when it asked for validation,
  so that a validation resumed by another process after a crash checks CAA `accounturi`
  (RFC 8657 §3) against that exact URL. NULL for validations started before.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

HOUR_US = 3600 * 1_000_000
# The default limits at this revision: name -> (burst, period in microseconds).
DEFAULTS = {
    "new_accounts_per_ip": (10, 3 * HOUR_US),
    "new_orders_per_account": (300, 3 * HOUR_US),
    "certificates_per_domain": (50, 7 * 24 * HOUR_US),
    "duplicate_certificates": (5, 7 * 24 * HOUR_US),
    "failed_validations": (5, HOUR_US),
}

buckets = sa.table(
    "rate_buckets",
    sa.column("key", sa.String),
    sa.column("tokens", sa.Float),
    sa.column("updated", sa.BigInteger),
    sa.column("version", sa.BigInteger),
    sa.column("tat", sa.BigInteger),
)


def _interval(burst: int, period: int) -> int:
    """As ratelimits.Rate.interval_us: rounded up to a whole microsecond."""
    return max(1, -(-period // burst))


def _of(name: str) -> sa.ColumnElement[bool]:
    prefix = f"{name}:"
    return sa.func.substr(buckets.c.key, 1, len(prefix)) == prefix


def upgrade() -> None:
    with op.batch_alter_table("rate_buckets") as batch:
        batch.add_column(sa.Column("tat", sa.BigInteger(), nullable=True))
    for name, (burst, period) in DEFAULTS.items():
        interval = _interval(burst, period)
        missing = sa.cast((burst - buckets.c.tokens) * interval, sa.BigInteger)
        tat = sa.case(
            (buckets.c.tokens >= burst, buckets.c.updated),
            (buckets.c.tokens <= 0, buckets.c.updated + burst * interval),
            else_=buckets.c.updated + missing,
        )
        op.execute(buckets.update().where(_of(name)).values(tat=tat))
    op.execute(buckets.delete().where(buckets.c.tat.is_(None)))
    with op.batch_alter_table("rate_buckets") as batch:
        batch.drop_column("tokens")
        batch.drop_column("updated")
        batch.drop_column("version")
        batch.alter_column("tat", existing_type=sa.BigInteger(), nullable=False)
    with op.batch_alter_table("challenges") as batch:
        batch.add_column(sa.Column("account_uri", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("challenges") as batch:
        batch.drop_column("account_uri")
    with op.batch_alter_table("rate_buckets") as batch:
        batch.add_column(sa.Column("tokens", sa.Float(), nullable=True))
        batch.add_column(sa.Column("updated", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("version", sa.BigInteger(), nullable=True))
    for name, (burst, period) in DEFAULTS.items():
        tolerance = burst * _interval(burst, period)
        empty_since = buckets.c.tat - tolerance
        op.execute(
            buckets.update().where(_of(name)).values(tokens=0.0, updated=empty_since, version=0)
        )
    op.execute(buckets.delete().where(buckets.c.tokens.is_(None)))
    with op.batch_alter_table("rate_buckets") as batch:
        batch.drop_column("tat")
        batch.alter_column("tokens", existing_type=sa.Float(), nullable=False)
        batch.alter_column("updated", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("version", existing_type=sa.BigInteger(), nullable=False)

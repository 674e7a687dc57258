"""the v0.1.0 schema

Revision ID: 0001
Revises:
Create Date: 2026-12-03 23:07:55.114977
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made before Alembic has some or all of these tables: create the rest.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "accounts" not in existing:
        op.create_table(
            "accounts",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("thumbprint", sa.String(length=64), nullable=False),
            sa.Column("jwk", sa.Text(), nullable=False),
            sa.Column("contact", sa.Text(), nullable=False),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("created", sa.BigInteger(), nullable=False),
            sa.Column("eab_kid", sa.String(length=255), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("thumbprint"),
        )
    if "ari_windows" not in existing:
        op.create_table(
            "ari_windows",
            sa.Column("certificate_id", sa.String(length=64), nullable=False),
            sa.Column("start", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("certificate_id"),
        )
    if "authorizations" not in existing:
        op.create_table(
            "authorizations",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("account_id", sa.String(length=64), nullable=False),
            sa.Column("identifier_type", sa.String(length=8), nullable=False),
            sa.Column("identifier_value", sa.String(length=255), nullable=False),
            sa.Column("wildcard", sa.Boolean(), nullable=False),
            sa.Column("stored_status", sa.String(length=16), nullable=False),
            sa.Column("expires", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        with op.batch_alter_table("authorizations", schema=None) as batch_op:
            batch_op.create_index(
                "ix_authz_reuse", ["account_id", "identifier_value", "wildcard"], unique=False
            )
    if "authz_profiles" not in existing:
        op.create_table(
            "authz_profiles",
            sa.Column("authz_id", sa.String(length=64), nullable=False),
            sa.Column("profile", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("authz_id"),
        )
    if "blocked_keys" not in existing:
        op.create_table(
            "blocked_keys",
            sa.Column("spki_sha256", sa.String(length=64), nullable=False),
            sa.Column("added", sa.BigInteger(), nullable=False),
            sa.Column("serial", sa.String(length=48), nullable=True),
            sa.PrimaryKeyConstraint("spki_sha256"),
        )
    if "certificates" not in existing:
        op.create_table(
            "certificates",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("serial", sa.String(length=48), nullable=False),
            sa.Column("order_id", sa.String(length=64), nullable=True),
            sa.Column("account_id", sa.String(length=64), nullable=True),
            sa.Column("pem", sa.Text(), nullable=True),
            sa.Column("identifiers", sa.Text(), nullable=False),
            sa.Column("not_before", sa.BigInteger(), nullable=False),
            sa.Column("not_after", sa.BigInteger(), nullable=False),
            sa.Column("issued", sa.BigInteger(), nullable=False),
            sa.Column("revoked_at", sa.BigInteger(), nullable=True),
            sa.Column("revocation_reason", sa.Integer(), nullable=True),
            sa.Column("abandoned", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("serial"),
        )
    if "challenges" not in existing:
        op.create_table(
            "challenges",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("authz_id", sa.String(length=64), nullable=False),
            sa.Column("type", sa.String(length=16), nullable=False),
            sa.Column("token", sa.String(length=64), nullable=False),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("validated", sa.BigInteger(), nullable=True),
            sa.Column("started", sa.BigInteger(), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        with op.batch_alter_table("challenges", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_challenges_authz_id"), ["authz_id"], unique=False)
    if "crls" not in existing:
        op.create_table(
            "crls",
            sa.Column("shard", sa.Integer(), nullable=False),
            sa.Column("number", sa.BigInteger(), nullable=False),
            sa.Column("this_update", sa.BigInteger(), nullable=False),
            sa.Column("der", sa.LargeBinary(), nullable=False),
            sa.PrimaryKeyConstraint("shard"),
        )
    if "eab_keys" not in existing:
        op.create_table(
            "eab_keys",
            sa.Column("kid", sa.String(length=255), nullable=False),
            sa.Column("hmac_key", sa.Text(), nullable=False),
            sa.Column("created", sa.BigInteger(), nullable=False),
            sa.Column("revoked", sa.BigInteger(), nullable=True),
            sa.Column("account_id", sa.String(length=64), nullable=True),
            sa.PrimaryKeyConstraint("kid"),
        )
    if "orders" not in existing:
        op.create_table(
            "orders",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("account_id", sa.String(length=64), nullable=False),
            sa.Column("identifiers", sa.Text(), nullable=False),
            sa.Column("authz_ids", sa.Text(), nullable=False),
            sa.Column("expires", sa.BigInteger(), nullable=False),
            sa.Column("created", sa.BigInteger(), nullable=False),
            sa.Column("not_before", sa.BigInteger(), nullable=True),
            sa.Column("not_after", sa.BigInteger(), nullable=True),
            sa.Column("profile", sa.String(length=64), nullable=True),
            sa.Column("replaces", sa.String(length=255), nullable=True),
            sa.Column("csr", sa.LargeBinary(), nullable=True),
            sa.Column("finalize_started", sa.BigInteger(), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("certificate_id", sa.String(length=64), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        with op.batch_alter_table("orders", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_orders_account_id"), ["account_id"], unique=False)
            batch_op.create_index(
                batch_op.f("ix_orders_finalize_started"), ["finalize_started"], unique=False
            )
    if "rate_buckets" not in existing:
        op.create_table(
            "rate_buckets",
            sa.Column("key", sa.String(length=255), nullable=False),
            sa.Column("tokens", sa.Float(), nullable=False),
            sa.Column("updated", sa.BigInteger(), nullable=False),
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
    if "renewal_authzs" not in existing:
        op.create_table(
            "renewal_authzs",
            sa.Column("authz_id", sa.String(length=64), nullable=False),
            sa.Column("order_id", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("authz_id"),
        )
    if "replacements" not in existing:
        op.create_table(
            "replacements",
            sa.Column("certificate_id", sa.String(length=64), nullable=False),
            sa.Column("order_id", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("certificate_id"),
        )
    if "settings" not in existing:
        op.create_table(
            "settings",
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if "used_nonces" not in existing:
        op.create_table(
            "used_nonces",
            sa.Column("nonce", sa.String(length=64), nullable=False),
            sa.Column("issued", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("nonce"),
        )
        with op.batch_alter_table("used_nonces", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_used_nonces_issued"), ["issued"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("used_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_used_nonces_issued"))

    op.drop_table("used_nonces")
    op.drop_table("settings")
    op.drop_table("replacements")
    op.drop_table("renewal_authzs")
    op.drop_table("rate_buckets")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_finalize_started"))
        batch_op.drop_index(batch_op.f("ix_orders_account_id"))

    op.drop_table("orders")
    op.drop_table("eab_keys")
    op.drop_table("crls")
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_challenges_authz_id"))

    op.drop_table("challenges")
    op.drop_table("certificates")
    op.drop_table("blocked_keys")
    op.drop_table("authz_profiles")
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        batch_op.drop_index("ix_authz_reuse")

    op.drop_table("authorizations")
    op.drop_table("ari_windows")
    op.drop_table("accounts")

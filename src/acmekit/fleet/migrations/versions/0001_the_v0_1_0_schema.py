"""the v0.1.0 schema

Revision ID: 0001
Revises:
Create Date: 2026-12-03 23:07:55.845144
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
    if "fleet_backups" not in existing:
        op.create_table(
            "fleet_backups",
            sa.Column("site_id", sa.String(length=32), nullable=False),
            sa.Column("ca", sa.String(length=255), nullable=False),
            sa.Column("serial", sa.String(length=48), nullable=False),
            sa.Column("not_before", sa.BigInteger(), nullable=False),
            sa.Column("not_after", sa.BigInteger(), nullable=False),
            sa.Column("fullchain_pem", sa.Text(), nullable=False),
            sa.Column("key_pem", sa.Text(), nullable=False),
            sa.Column("issued", sa.BigInteger(), nullable=False),
            sa.Column("renew_at", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("site_id"),
        )
    if "fleet_ca_accounts" not in existing:
        op.create_table(
            "fleet_ca_accounts",
            sa.Column("ca", sa.String(length=255), nullable=False),
            sa.Column("key_pem", sa.Text(), nullable=False),
            sa.Column("account_url", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("ca"),
        )
    if "fleet_ca_health" not in existing:
        op.create_table(
            "fleet_ca_health",
            sa.Column("ca", sa.String(length=255), nullable=False),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.Column("down_until", sa.BigInteger(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("ca"),
        )
    if "fleet_ca_issuances" not in existing:
        op.create_table(
            "fleet_ca_issuances",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("ca", sa.String(length=255), nullable=False),
            sa.Column("domain", sa.String(length=255), nullable=False),
            sa.Column("site_id", sa.String(length=32), nullable=False),
            sa.Column("at", sa.BigInteger(), nullable=False),
            sa.Column("final", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        with op.batch_alter_table("fleet_ca_issuances", schema=None) as batch_op:
            batch_op.create_index(
                "fleet_ca_issuances_ca_domain_at", ["ca", "domain", "at"], unique=False
            )
    if "fleet_ca_slots" not in existing:
        op.create_table(
            "fleet_ca_slots",
            sa.Column("ca", sa.String(length=255), nullable=False),
            sa.Column("slot", sa.Integer(), nullable=False),
            sa.Column("holder", sa.String(length=160), nullable=True),
            sa.Column("site_id", sa.String(length=32), nullable=True),
            sa.Column("until", sa.BigInteger(), nullable=True),
            sa.PrimaryKeyConstraint("ca", "slot"),
        )
    if "fleet_ca_stats" not in existing:
        op.create_table(
            "fleet_ca_stats",
            sa.Column("ca", sa.String(length=255), nullable=False),
            sa.Column("hour", sa.BigInteger(), nullable=False),
            sa.Column("issued", sa.Integer(), nullable=False),
            sa.Column("failed", sa.Integer(), nullable=False),
            sa.Column("issued_seconds", sa.Float(), nullable=False),
            sa.Column("failed_seconds", sa.Float(), nullable=False),
            sa.Column("max_seconds", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("ca", "hour"),
        )
    if "fleet_certificates" not in existing:
        op.create_table(
            "fleet_certificates",
            sa.Column("site_id", sa.String(length=32), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("serial", sa.String(length=48), nullable=False),
            sa.Column("not_before", sa.BigInteger(), nullable=False),
            sa.Column("not_after", sa.BigInteger(), nullable=False),
            sa.Column("fullchain_pem", sa.Text(), nullable=False),
            sa.Column("key_pem", sa.Text(), nullable=False),
            sa.Column("issued", sa.BigInteger(), nullable=False),
            sa.Column("ca", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("site_id", "version"),
        )
    if "fleet_challenges" not in existing:
        op.create_table(
            "fleet_challenges",
            sa.Column("token", sa.String(length=255), nullable=False),
            sa.Column("key_authorization", sa.Text(), nullable=False),
            sa.Column("created", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("token"),
        )
    if "fleet_deployments" not in existing:
        op.create_table(
            "fleet_deployments",
            sa.Column("site_id", sa.String(length=32), nullable=False),
            sa.Column("edge", sa.String(length=255), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("updated", sa.BigInteger(), nullable=False),
            sa.Column("failure_count", sa.Integer(), nullable=False),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("site_id", "edge"),
        )
    if "fleet_names" not in existing:
        op.create_table(
            "fleet_names",
            sa.Column("name", sa.String(length=255), nullable=False),
            sa.Column("site_id", sa.String(length=32), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
        with op.batch_alter_table("fleet_names", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_fleet_names_site_id"), ["site_id"], unique=False)
    if "fleet_settings" not in existing:
        op.create_table(
            "fleet_settings",
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if "fleet_site_options" not in existing:
        op.create_table(
            "fleet_site_options",
            sa.Column("site_id", sa.String(length=32), nullable=False),
            sa.Column("backup", sa.Boolean(), nullable=False),
            sa.Column("order_ca", sa.String(length=255), nullable=True),
            sa.Column("next_check", sa.BigInteger(), nullable=True),
            sa.Column("backup_retry_at", sa.BigInteger(), nullable=True),
            sa.PrimaryKeyConstraint("site_id"),
        )
    if "fleet_sites" not in existing:
        op.create_table(
            "fleet_sites",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("names", sa.Text(), nullable=False),
            sa.Column("primary_name", sa.String(length=255), nullable=False),
            sa.Column("method", sa.String(length=16), nullable=False),
            sa.Column("desired", sa.String(length=16), nullable=False),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("created", sa.BigInteger(), nullable=False),
            sa.Column("next_action_at", sa.BigInteger(), nullable=True),
            sa.Column("renew_at", sa.BigInteger(), nullable=True),
            sa.Column("current_version", sa.Integer(), nullable=False),
            sa.Column("lease_owner", sa.String(length=64), nullable=True),
            sa.Column("lease_until", sa.BigInteger(), nullable=True),
            sa.Column("failure_count", sa.Integer(), nullable=False),
            sa.Column("last_problem", sa.Text(), nullable=True),
            sa.Column("order_url", sa.Text(), nullable=True),
            sa.Column("order_key_pem", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        with op.batch_alter_table("fleet_sites", schema=None) as batch_op:
            batch_op.create_index(
                batch_op.f("ix_fleet_sites_next_action_at"), ["next_action_at"], unique=False
            )
            batch_op.create_index(
                batch_op.f("ix_fleet_sites_primary_name"), ["primary_name"], unique=False
            )
            batch_op.create_index(batch_op.f("ix_fleet_sites_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fleet_sites", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fleet_sites_state"))
        batch_op.drop_index(batch_op.f("ix_fleet_sites_primary_name"))
        batch_op.drop_index(batch_op.f("ix_fleet_sites_next_action_at"))

    op.drop_table("fleet_sites")
    op.drop_table("fleet_site_options")
    op.drop_table("fleet_settings")
    with op.batch_alter_table("fleet_names", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fleet_names_site_id"))

    op.drop_table("fleet_names")
    op.drop_table("fleet_deployments")
    op.drop_table("fleet_challenges")
    op.drop_table("fleet_certificates")
    op.drop_table("fleet_ca_stats")
    op.drop_table("fleet_ca_slots")
    with op.batch_alter_table("fleet_ca_issuances", schema=None) as batch_op:
        batch_op.drop_index("fleet_ca_issuances_ca_domain_at")

    op.drop_table("fleet_ca_issuances")
    op.drop_table("fleet_ca_health")
    op.drop_table("fleet_ca_accounts")
    op.drop_table("fleet_backups")

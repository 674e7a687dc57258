"""The fleet's tables (SQLAlchemy Core), versioned by the migrations next to this module.

Times are integer microseconds since the epoch (UTC), as in the CA's store. How the
rows are shared between workers is told in `acmekit.fleet.repos`.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

sites = sa.Table(
    "fleet_sites",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("names", sa.Text, nullable=False),  # JSON list
    sa.Column("primary_name", sa.String(255), nullable=False, index=True),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("desired", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("next_action_at", sa.BigInteger, index=True),
    sa.Column("renew_at", sa.BigInteger),
    sa.Column("current_version", sa.Integer, nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", sa.BigInteger),
    sa.Column("failure_count", sa.Integer, nullable=False),
    sa.Column("last_problem", sa.Text),  # JSON
    sa.Column("order_url", sa.Text),
    sa.Column("order_key_pem", sa.Text),
    # its options (`SiteOptions`)
    sa.Column("backup", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("order_ca", sa.String(255)),
    sa.Column("next_check", sa.BigInteger),
    sa.Column("backup_retry_at", sa.BigInteger),
)

certificates = sa.Table(
    "fleet_certificates",
    metadata,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("serial", sa.String(48), nullable=False),
    sa.Column("not_before", sa.BigInteger, nullable=False),
    sa.Column("not_after", sa.BigInteger, nullable=False),
    sa.Column("fullchain_pem", sa.Text, nullable=False),
    sa.Column("key_pem", sa.Text, nullable=False),
    sa.Column("issued", sa.BigInteger, nullable=False),
    sa.Column("ca", sa.Text, nullable=False),
)

deployments = sa.Table(
    "fleet_deployments",
    metadata,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("edge", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated", sa.BigInteger, nullable=False),
    sa.Column("failure_count", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
)

challenges = sa.Table(
    "fleet_challenges",
    metadata,
    sa.Column("token", sa.String(255), primary_key=True),
    sa.Column("key_authorization", sa.Text, nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),
)

settings = sa.Table(
    "fleet_settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

backups = sa.Table(
    "fleet_backups",
    metadata,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("ca", sa.String(255), nullable=False),
    sa.Column("serial", sa.String(48), nullable=False),
    sa.Column("not_before", sa.BigInteger, nullable=False),
    sa.Column("not_after", sa.BigInteger, nullable=False),
    sa.Column("fullchain_pem", sa.Text, nullable=False),
    sa.Column("key_pem", sa.Text, nullable=False),
    sa.Column("issued", sa.BigInteger, nullable=False),
    sa.Column("renew_at", sa.BigInteger, nullable=False),
)

ca_accounts = sa.Table(
    "fleet_ca_accounts",
    metadata,
    sa.Column("ca", sa.String(255), primary_key=True),
    sa.Column("key_pem", sa.Text, nullable=False),
    sa.Column("account_url", sa.Text),
)

ca_health = sa.Table(
    "fleet_ca_health",
    metadata,
    sa.Column("ca", sa.String(255), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("down_until", sa.BigInteger),
    sa.Column("last_error", sa.Text),
)

ca_issuances = sa.Table(
    "fleet_ca_issuances",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ca", sa.String(255), nullable=False),
    sa.Column("domain", sa.String(255), nullable=False),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("final", sa.Boolean, nullable=False),
    sa.Index("fleet_ca_issuances_ca_domain_at", "ca", "domain", "at"),
    sa.Index("fleet_ca_issuances_site_id", "site_id"),  # revision 0004
)

# Added with unique names: a site's names (lower-cased), while the site is not removed.
site_names = sa.Table(
    "fleet_names",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("site_id", sa.String(32), nullable=False, index=True),
)

# Added with fleet-wide caps and figures per CA (see the top of the module).
ca_slots = sa.Table(
    "fleet_ca_slots",
    metadata,
    sa.Column("ca", sa.String(255), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True),
    sa.Column("holder", sa.String(160)),  # None: free
    sa.Column("site_id", sa.String(32)),  # the site the order is for, to show
    sa.Column("until", sa.BigInteger),  # free for the taking from then on
)

ca_stats = sa.Table(
    "fleet_ca_stats",
    metadata,
    sa.Column("ca", sa.String(255), primary_key=True),
    sa.Column("hour", sa.BigInteger, primary_key=True),  # the bucket's start
    sa.Column("issued", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("issued_seconds", sa.Float, nullable=False),
    sa.Column("failed_seconds", sa.Float, nullable=False),
    sa.Column("max_seconds", sa.Float, nullable=False),
)

# Added with on-demand sites: the sites a name seen at an edge made (ondemand.py), with
# the registered domain each counts against, so every fleet process applies one limit.
on_demand = sa.Table(
    "fleet_on_demand",
    metadata,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("domain", sa.String(255), nullable=False),  # the registered domain
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Index("fleet_on_demand_domain_created", "domain", "created"),
    sa.Index("fleet_on_demand_created", "created"),
)

"""Reservations found by site

- fleet_ca_issuances gets an index on (site_id): a worker settles or drops its site's
  reservation at the end of every order, and without the index that statement read
  every row counted against the CA, a cost that grew with the fleet.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("fleet_ca_issuances_site_id", "fleet_ca_issuances", ["site_id"])


def downgrade() -> None:
    op.drop_index("fleet_ca_issuances_site_id", "fleet_ca_issuances")

"""The CA database's Alembic environment (revisions under versions/)."""

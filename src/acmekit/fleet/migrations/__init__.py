"""The fleet inventory's Alembic environment (revisions under versions/)."""

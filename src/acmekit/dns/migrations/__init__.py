"""The DNS server's shared store: its Alembic environment (revisions under versions/)."""

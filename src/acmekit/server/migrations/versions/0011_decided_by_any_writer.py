"""The database records which challenge decided an authorization, whoever writes the outcome

Migration 0010's `decided_by` was set only by this release's code, in the statement that
records a challenge's outcome. A process of an older release, running beside this one on
the upgraded database (docs/server.md, Upgrades), or finishing a validation while 0010's
fill ran, records the outcome on the challenge alone: its authorization kept
`decided_by` NULL and stayed in the pending count (and on ix_authz_pending) although
RFC 8555 §7.1.6 makes it valid or invalid, until it expired (a met one: a month on).

tr_challenge_decides: a challenge's status set to valid or invalid names it on its
authorization, if none is named yet. This release's statement names it already, so the
trigger's UPDATE finds no row to change. Made before the fill below, which then mends the
rows older processes decided since 0010: on PostgreSQL the trigger's lock on challenges
holds their writers off until the upgrade commits, so none is missed.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_DECIDES = "NEW.status IN ('valid', 'invalid')"
_NAME = (
    "UPDATE authorizations SET decided_by = NEW.id WHERE id = NEW.authz_id AND decided_by IS NULL"
)
_DECIDING = "c.authz_id = authorizations.id AND c.status IN ('valid', 'invalid')"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER tr_challenge_decides AFTER UPDATE OF status ON challenges "
            f"FOR EACH ROW WHEN {_DECIDES} BEGIN {_NAME}; END"
        )
    else:
        op.execute(
            "CREATE FUNCTION challenge_decides() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {_NAME}; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER tr_challenge_decides AFTER UPDATE OF status ON challenges "
            f"FOR EACH ROW WHEN ({_DECIDES}) EXECUTE PROCEDURE challenge_decides()"
        )
    # The rows older processes decided since 0010 (MIN, as 0010's fill).
    op.execute(
        "UPDATE authorizations SET decided_by = "
        f"(SELECT MIN(c.id) FROM challenges c WHERE {_DECIDING}) "
        f"WHERE decided_by IS NULL AND EXISTS (SELECT 1 FROM challenges c WHERE {_DECIDING})"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER tr_challenge_decides")
    else:
        op.execute("DROP TRIGGER tr_challenge_decides ON challenges")
        op.execute("DROP FUNCTION challenge_decides()")

"""The database records which challenge decided an authorization, whoever writes the outcome

This release's code sets `decided_by` in the statement that records a challenge's
outcome. A process of an older release, running beside this one on the upgraded
database (docs/server.md, Upgrades), records the outcome on the challenge alone: its
authorization would keep `decided_by` NULL and stay in the pending count (and on
ix_authz_pending) although RFC 8555 §7.1.6 makes it valid or invalid, until it expired
(a met one: a month on).

tr_challenge_decides: a challenge's status set to valid or invalid names it on its
authorization, if none is named yet. This release's statement names it already, so the
trigger's UPDATE finds no row to change. Made before 0012's fill, in a transaction of
its own: on PostgreSQL CREATE TRIGGER waits for the open writers of challenges and
every later one fires it, so each outcome is either committed before the fill reads
it or named by the trigger, and none is missed. That wait is under a short
lock_timeout, tried again after a pause (`migrate.ddl_briefly`): waiting, it would queue
every later request on challenges behind it.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from acmekit.migrate import ddl_briefly

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_DECIDES = "NEW.status IN ('valid', 'invalid')"
_NAME = (
    "UPDATE authorizations SET decided_by = NEW.id WHERE id = NEW.authz_id AND decided_by IS NULL"
)


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
        ddl_briefly(
            "challenges",
            lambda: op.execute(
                "CREATE TRIGGER tr_challenge_decides AFTER UPDATE OF status ON challenges "
                f"FOR EACH ROW WHEN ({_DECIDES}) EXECUTE PROCEDURE challenge_decides()"
            ),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER tr_challenge_decides")
    else:
        op.execute("DROP TRIGGER tr_challenge_decides ON challenges")
        op.execute("DROP FUNCTION challenge_decides()")

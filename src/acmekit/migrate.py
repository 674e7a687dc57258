"""Schema versions of the CA's and the fleet's databases: Alembic, driven from code.

Each database has its own Alembic environment inside the package
(`acmekit/server/migrations`, `acmekit/fleet/migrations`), so an installed wheel carries
them and no alembic.ini is read. A fresh database is made by running every revision; a
database made before Alembic (its tables there, no version table) goes through revision
0001, which creates only the tables it lacks, and on from there.

Several processes may start on one database at once: on PostgreSQL the upgrade runs under
a session-level advisory lock, each revision in a transaction of its own with its version
(a revision may commit inside itself: the CA's fill in batches, an index built
CONCURRENTLY), on SQLite in one transaction under the write lock taken up front (BEGIN
IMMEDIATE); whoever comes second finds the work done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schema:
    """One database's migrations: where they are, their version table, the command that
    upgrades it (named in errors), and the advisory lock key used on PostgreSQL."""

    name: str
    location: Path
    version_table: str
    lock_key: int
    command: str


_ROOT = Path(__file__).parent
SERVER = Schema(
    name="CA",
    location=_ROOT / "server" / "migrations",
    version_table="alembic_version",
    lock_key=0x61636D65_00000001,  # "acme", 1
    command="acmekit server db upgrade",
)
FLEET = Schema(
    name="fleet",
    location=_ROOT / "fleet" / "migrations",
    version_table="fleet_alembic_version",  # apart from the CA's: both may share a database
    lock_key=0x61636D65_00000002,
    command="acmekit fleet db upgrade",
)
CT = Schema(
    name="CT log",
    location=_ROOT / "ct" / "migrations",
    version_table="ct_alembic_version",  # apart from the others': all may share a database
    lock_key=0x61636D65_00000003,
    command="acmekit ct (it upgrades on start)",
)

DNS = Schema(
    name="DNS",
    location=_ROOT / "dns" / "migrations",
    version_table="dns_alembic_version",  # the DNS server's records may share a database too
    lock_key=0x61636D65_00000D05,  # "acme", DNS
    command="acmekit dns (it upgrades its --db on start)",
)


class SchemaOutOfDate(Exception):
    """The database's schema is older (or newer) than this acmekit's."""


class TableBusy(Exception):
    """A revision's DDL found its table locked by other transactions on every try."""


@dataclass(frozen=True)
class LockWait:
    """How a revision's DDL waits for its table's lock (PostgreSQL): at most `timeout`
    seconds a try, `tries` times, `pause` seconds apart. A DDL statement waiting in the
    lock queue makes every later reader and writer of the table queue behind it, so a
    transaction held open on the table (a psql session, a slow report) would stall the
    CA for as long as it lasts; this bounds the stall to `timeout` at a time."""

    timeout: float = 1.0
    tries: int = 30
    pause: float = 1.0

    def __post_init__(self) -> None:
        # No try would skip the revision's DDL while the revision is recorded applied.
        if self.tries < 1 or self.timeout <= 0 or self.pause < 0:
            raise ValueError(f"{self!r}: at least one try, a timeout above 0, a pause of 0 or more")


# Rows a revision's fill updates in each of its transactions (PostgreSQL): each holds
# row locks on those rows only, for about 0.12 s here (docs/decisions.md, "The upgrade on
# a live CA").
FILL_BATCH = 5000
# How often a process waiting for another's upgrade asks for the lock again (PostgreSQL).
_LOCK_POLL = 0.2
# lock_not_available: the statement gave up on its lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"


def _config(
    schema: Schema,
    conn: Connection | None = None,
    fill_batch: int = FILL_BATCH,
    lock_wait: LockWait = LockWait(),
) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(schema.location))
    cfg.attributes["connection"] = conn
    cfg.attributes["version_table"] = schema.version_table
    cfg.attributes["fill_batch"] = fill_batch
    cfg.attributes["lock_key"] = schema.lock_key
    cfg.attributes["lock_wait"] = lock_wait
    return cfg


def head(schema: Schema) -> str:
    found = ScriptDirectory.from_config(_config(schema)).get_current_head()
    assert found is not None
    return found


def current(engine: Engine, schema: Schema) -> str | None:
    """The database's revision; None for one that is empty or predates Alembic."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": schema.version_table})
        return context.get_current_revision()


@contextmanager
def _session_lock(conn: Connection, schema: Schema) -> Iterator[None]:
    """PostgreSQL's advisory lock for the connection's session, across the revisions'
    commits. Asked for again and again rather than waited for inside
    pg_advisory_lock: a statement waiting there holds a snapshot, and CREATE INDEX
    CONCURRENTLY in the holder's upgrade waits for every older snapshot to end, a
    deadlock that PostgreSQL would break by failing one of the two."""
    key = {"k": schema.lock_key}
    # Each ask a transaction of its own, with no COMMIT to send after it.
    conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), key).scalar():
            time.sleep(_LOCK_POLL)
    finally:
        conn.rollback()  # SQLAlchemy's transaction: the database's ended with each ask
        conn.execution_options(isolation_level=conn.default_isolation_level)
    try:
        yield
    finally:
        try:
            conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), key)
            conn.commit()
        except sa.exc.DBAPIError:
            # the session is gone, and its lock with it; the pool must not keep it
            conn.invalidate()


def _migrate(
    conn: Connection, schema: Schema, step: str, revision: str, fill_batch: int, wait: LockWait
) -> None:
    cfg = _config(schema, conn, fill_batch, wait)
    if step == "upgrade":
        command.upgrade(cfg, revision)
    else:
        command.downgrade(cfg, revision)


def _run(
    engine: Engine,
    schema: Schema,
    step: str,
    revision: str,
    fill_batch: int = FILL_BATCH,
    wait: LockWait = LockWait(),
) -> None:
    if engine.dialect.name == "postgresql":
        # No transaction around the run: Alembic opens one a revision.
        with engine.connect() as conn, _session_lock(conn, schema):
            try:
                _migrate(conn, schema, step, revision, fill_batch, wait)
            except sa.exc.PendingRollbackError as exc:
                # An interrupt (Ctrl-C) invalidates the connection (SQLAlchemy), and
                # Alembic's autocommit block then ends with a COMMIT on it, whose error
                # hides the interrupt: the operator is told of the interrupt.
                if isinstance(exc.__context__, KeyboardInterrupt):
                    raise exc.__context__ from None
                raise
        return
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        _migrate(conn, schema, step, revision, fill_batch, wait)


def upgrade(
    engine: Engine,
    schema: Schema,
    revision: str = "head",
    *,
    fill_batch: int = FILL_BATCH,
    lock_wait: LockWait = LockWait(),
) -> None:
    """Bring the database to `revision` (the newest by default). `fill_batch`: the rows a
    revision's fill updates in each transaction; `lock_wait`: how its DDL waits for a
    table's lock (both PostgreSQL)."""
    if revision == "head" and current(engine, schema) == head(schema):
        return
    log.info("upgrading the %s database to %s", schema.name, revision)
    _run(engine, schema, "upgrade", revision, fill_batch, lock_wait)


def downgrade(engine: Engine, schema: Schema, revision: str) -> None:
    _run(engine, schema, "downgrade", revision)


def prepare(engine: Engine, schema: Schema, auto_upgrade: bool = True) -> None:
    """Upgrade the database, or (`auto_upgrade` off) refuse one that is not current."""
    if auto_upgrade:
        upgrade(engine, schema)
        return
    found, wanted = current(engine, schema), head(schema)
    if found != wanted:
        raise SchemaOutOfDate(
            f"the {schema.name} database is at schema {found or 'none'}, this acmekit needs "
            f"{wanted}: run `{schema.command}`"
        )


def ddl_briefly(table: str, ddl: Callable[[], object]) -> None:
    """Run a revision's `ddl` on `table` (PostgreSQL) under a short lock_timeout, tried
    again after a pause while other transactions hold the table: each try in a savepoint,
    so a try that gave up leaves the lock queue (and the table's later readers and
    writers go on) and the revision's transaction goes on. The revision's other
    statements keep the session's lock_timeout."""
    from alembic import context, op

    wait: LockWait = context.config.attributes.get("lock_wait", LockWait())
    conn = op.get_bind()
    # the session's setting, put back inside the savepoint before it is released
    before = conn.execute(sa.text("SELECT current_setting('lock_timeout')")).scalar()
    for tries_left in reversed(range(wait.tries)):
        try:
            with conn.begin_nested():
                conn.execute(
                    sa.text("SELECT set_config('lock_timeout', :t, true)"),
                    {"t": f"{max(1, round(wait.timeout * 1000))}ms"},
                )
                ddl()
                conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"), {"t": before})
            return
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            if tries_left == 0:
                raise TableBusy(_busy(conn, table, wait)) from None
        time.sleep(wait.pause)


# The sessions waiting inside pg_advisory_lock / pg_advisory_xact_lock for the runner's
# key (a bigint key is classid, objid and objsubid 1 in pg_locks). This release's runner
# only polls pg_try_advisory_lock, so these are an older release's starts; each would
# fail anyway on a revision it does not know once it got the lock.
_CANCEL_WAITERS = (
    "SELECT pg_cancel_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' "
    "AND NOT l.granted AND l.objsubid = 1 AND l.classid::bigint = :hi "
    "AND l.objid::bigint = :lo "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_DEADLOCK = "40P01"
_BUILD_TRIES = 5


def build_index_concurrently(conn: Connection, name: str, on: str) -> None:
    """A revision's CREATE INDEX CONCURRENTLY (PostgreSQL, in an autocommit block),
    which takes no lock that stops readers or writers. One that failed (an interrupted
    run) is left in the catalog, invalid: dropped and built again.

    The build waits for every older snapshot to end, and a session waiting for the
    runner's advisory lock inside a statement holds one until the lock is released at
    the upgrade's end: PostgreSQL breaks that cycle by failing one of the two, often the
    build. Such waiters are cancelled before each try, and a deadlock tried again."""
    from alembic import context

    lock_key = int(context.config.attributes["lock_key"])
    key = {"hi": lock_key >> 32, "lo": lock_key & 0xFFFFFFFF}
    for tries_left in reversed(range(_BUILD_TRIES)):
        conn.execute(sa.text(_CANCEL_WAITERS), key).all()
        valid = conn.execute(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"),
            {"n": name},
        ).scalar()
        if valid is False:
            conn.execute(sa.text(f"DROP INDEX CONCURRENTLY {name}"))
        try:
            conn.execute(sa.text(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {on}"))
            return
        except sa.exc.DBAPIError as exc:
            if tries_left == 0 or getattr(exc.orig, "sqlstate", None) != _DEADLOCK:
                raise


def _busy(conn: Connection, table: str, wait: LockWait) -> str:
    """The error's line: the table, the tries, and the backends holding it now."""
    pids = conn.execute(
        sa.text(
            "SELECT DISTINCT pid FROM pg_locks WHERE relation = CAST(:t AS regclass) "
            "AND granted AND pid <> pg_backend_pid() ORDER BY pid"
        ),
        {"t": table},
    ).scalars()
    held = ", ".join(str(p) for p in pids) or "none now"
    return (
        f"table {table} stayed locked by other transactions through {wait.tries} tries "
        f"of {wait.timeout:g} s (backends holding it, see pg_stat_activity: {held}); "
        "end them and run the upgrade again"
    )


def run_env(target_metadata: sa.MetaData) -> None:
    """The body of each environment's env.py: migrate over the connection given."""
    from alembic import context

    conn = context.config.attributes["connection"]
    context.configure(
        connection=conn,
        target_metadata=target_metadata,
        version_table=context.config.attributes["version_table"],
        render_as_batch=True,  # SQLite alters a table by copying it
        # PostgreSQL: each revision commits with its version (`_run` opens none around
        # them), so one that commits inside itself (autocommit_block) leaves the earlier
        # ones recorded; SQLite's run is the caller's one transaction.
        transaction_per_migration=not conn.in_transaction(),
    )
    with context.begin_transaction():
        context.run_migrations()


# The `db upgrade` and `db current` commands of `acmekit server` and `acmekit fleet`.


def upgrade_report(url: str, schema: Schema) -> str:
    """Upgrade the database at `url`; what was done, in a line."""
    from acmekit.database import create_engine

    engine = create_engine(url)
    try:
        before = current(engine, schema)
        upgrade(engine, schema)
        after = current(engine, schema)
    finally:
        engine.dispose()
    if before == after:
        return f"the {schema.name} database is at {after}: nothing to do"
    return f"the {schema.name} database went from {before or 'none'} to {after}"


def current_report(url: str, schema: Schema) -> str:
    """The revision of the database at `url` and whether it is this acmekit's, in a line."""
    from acmekit.database import create_engine

    engine = create_engine(url)
    try:
        found, wanted = current(engine, schema), head(schema)
    finally:
        engine.dispose()
    if found == wanted:
        return f"{found} (current)"
    return f"{found or 'none'} (this acmekit needs {wanted}: run `{schema.command}`)"

"""On PostgreSQL the log's reads run with a statement timeout (`READ_TIMEOUT_MS`): a
read waiting behind a lock another session holds (a migration's, a `LOCK TABLE`) is
answered 503, the database unavailable, and its read thread and connection are free
again, instead of waiting for as long as the lock is held."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.ct.service import CtConfig, assemble
from acmekit.database import create_engine
from acmekit_testkit.ctlog import ca_hierarchy, json_call, served_log
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.postgres


def test_a_read_behind_a_held_lock_is_answered_503(tmp_path: Path) -> None:
    require_postgres_or_skip()
    ca_hierarchy(tmp_path / "ca")
    with fresh_postgres_database("acmekit_ctread") as url:
        config = CtConfig(state_dir=tmp_path / "log", db=url, roots=tmp_path / "ca" / "root.pem")
        app = assemble(config)
        engine = create_engine(url)
        try:
            with served_log(app) as base, engine.connect() as holder:
                root = base.removesuffix("ct/v1/")
                holder.execute(sa.text("LOCK TABLE ct_issuers IN ACCESS EXCLUSIVE MODE"))
                try:
                    status, doc = json_call(root + "issuer/" + "ab" * 32)
                finally:
                    holder.rollback()
                assert (status, doc["error"]) == (503, "unavailable")
                status, doc = json_call(root + "issuer/" + "ab" * 32)
                assert (status, doc["error"]) == (404, "not_found")
        finally:
            app.log.store.close()
            engine.dispose()

"""Schema migrations on SQLite and PostgreSQL: v0.1.0's databases (tests/fixtures/v0.1.0)
upgrade with their rows intact and downgrade back to the same rows; the tables the code
declares and a migrated database agree; concurrent upgrades do not race; and the
`db upgrade / current` commands and `--no-auto-upgrade`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from acmekit import migrate
from acmekit.cli.main import cli
from acmekit.database import create_engine, to_us
from acmekit.fleet import schema as fleet_tables
from acmekit.fleet.inventory import Inventory
from acmekit.migrate import FLEET, SERVER, SchemaOutOfDate
from acmekit.protocol.messages import AuthorizationStatus, ChallengeStatus
from acmekit.server import schema as ca_tables
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.legacy import load_v010
from acmekit_testkit.tiers import BACKEND_PARAMS

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DAY_US = 86_400 * 1_000_000
SIDE_TABLES = {"authz_profiles", "renewal_authzs", "replacements", "ari_windows"}


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ca_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path, "ca.db") as url:
        yield url


@pytest.fixture
def fleet_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path, "fleet.db") as url:
        yield url


def _rows(url: str, skip: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted (booleans as SQLite keeps them), but the version table."""
    engine = create_engine(url)
    tables = sa.MetaData()
    tables.reflect(engine)
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in tables.sorted_tables:
            if table.name != skip:
                rows = conn.execute(sa.select(table)).all()
                norm = [tuple(int(v) if isinstance(v, bool) else v for v in r) for r in rows]
                found[table.name] = sorted(norm, key=repr)
    engine.dispose()
    return found


def _diff(url: str, schema: migrate.Schema, metadata: sa.MetaData) -> list[Any]:
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": schema.version_table})
        found = compare_metadata(context, metadata)
    engine.dispose()
    return list(found)


def test_the_ca_v010_database_upgrades_with_its_rows(ca_url: str) -> None:
    load_v010("ca", ca_url)
    store = Store.from_url(ca_url)
    assert migrate.current(store.engine, SERVER) == migrate.head(SERVER)
    assert not SIDE_TABLES & set(sa.inspect(store.engine).get_table_names())
    account = store.accounts.account("acct1")
    assert account is not None and account.eab_kid == "kid-1"
    assert account.contact == ("mailto:ops1@example.com",)
    assert store.orders.authz_profiles(["authz1", "authz2", "authz4"]) == {
        "authz2": "shortlived",
        "authz4": "classic",
    }
    assert store.orders.authz_in_renewal("authz3") and not store.orders.authz_in_renewal("authz1")
    (authz,) = store.orders.authorizations(["authz1"])
    assert authz.expires == datetime(2026, 12, 1, tzinfo=UTC)
    assert [c.status for c in authz.challenges] == [ChallengeStatus.VALID] * 2
    assert authz.stored_status == AuthorizationStatus.PENDING
    order = store.orders.order("order5")
    assert order is not None and order.error is not None
    assert order.error["type"].endswith(":unauthorized")
    renewal = store.orders.order("order3")
    assert renewal is not None and renewal.replaces == "aid.cert1"
    assert renewal.certificate_id == "cert3"
    assert (
        store.certificates.replacement("cert1") == "order3"
        and store.certificates.replacement("cert2") is None
    )
    assert store.certificates.ari_window_start("cert1") == datetime(2026, 11, 11, tzinfo=UTC)
    assert store.certificates.ari_window_start("cert2") is None
    revoked = store.certificates.certificate("cert2")
    assert revoked is not None and revoked.revocation_reason == 1 and revoked.pem
    assert [c.id for c in store.certificates.revoked_certificates(T0)] == ["cert2"]
    assert store.certificates.key_blocked("ab" * 32)
    assert [(k.kid, k.account_id) for k in store.accounts.eab_keys()] == [
        ("kid-1", "acct1"),
        ("kid-2", None),
    ]
    crl = store.certificates.crl(0)
    assert crl is not None and crl.number == 1
    assert not store.accounts.redeem_nonce("nonce-1", T0)
    bucket = store.buckets.update_bucket("orders:acct1", lambda _: None)
    assert bucket is not None and bucket.tokens == 297.0
    assert store.accounts.setting("crl_shards", "9") == "2"
    store.engine.dispose()


def test_the_fleet_v010_inventory_upgrades_with_its_rows(fleet_url: str) -> None:
    load_v010("fleet", fleet_url)
    inv = Inventory.from_url(fleet_url)
    assert migrate.current(inv.engine, FLEET) == "0002"
    assert "fleet_site_options" not in sa.inspect(inv.engine).get_table_names()
    shop, blog, cdn = (
        inv.sites.site_by_name(n)
        for n in ("shop.example.net", "blog.example.net", "*.cdn.example.net")
    )
    assert shop is not None and blog is not None and cdn is not None
    t0 = to_us(T0)
    assert (
        inv.sites.options(shop.id).backup and inv.sites.options(shop.id).next_check == t0 + DAY_US
    )
    assert inv.sites.options(blog.id).backup_retry_at == t0 + 2 * 3600 * 1_000_000
    assert not inv.sites.options(blog.id).backup
    assert inv.sites.options(cdn.id).order_ca == "second"
    assert [v.version for v in inv.sites.versions(shop.id)] == [1, 2]
    assert shop.current_version == 2
    deployed = inv.sites.deployments(shop.id)
    assert deployed["edge-a"].version == 2 and deployed["edge-b"].last_error
    assert inv.names.holder("www.shop.example.net") == shop.id
    assert inv.names.holder("old.example.net") is None  # removed in v0.1.0
    assert (
        inv.settings.value("names_indexed") is None and inv.settings.value("fleet_id") == "fixture"
    )
    assert inv.challenges.key_authorization("tok-1") == "tok-1.thumb"
    assert inv.cas.account_url("first") == "https://ca.example/acct/1"
    assert inv.cas.health(["second"])["second"].failures == 1
    assert inv.cas.stats(t0)[0].issued == 3
    # and it keeps working: list, force a renewal, lease it, store a new version
    assert len(inv.sites.page()) == 4
    assert inv.sites.force_renewal(blog.id, t0 + DAY_US)
    assert blog.id in [s.id for s in inv.sites.lease_due("w", t0 + DAY_US, 60_000_000, 10)]
    inv.close()


@pytest.mark.parametrize(("kind", "schema"), [("ca", SERVER), ("fleet", FLEET)])
def test_upgrading_and_downgrading_gives_back_the_v010_rows(
    backend: str, tmp_path: Path, kind: str, schema: migrate.Schema
) -> None:
    with fresh_database(backend, tmp_path, f"{kind}.db") as url:
        load_v010(kind, url)
        before = _rows(url, schema.version_table)
        engine = create_engine(url)
        migrate.upgrade(engine, schema)
        upgraded = _rows(url, schema.version_table)
        migrate.downgrade(engine, schema, "0001")
        assert migrate.current(engine, schema) == "0001"
        engine.dispose()
        assert _rows(url, schema.version_table) == before
        assert upgraded != before


@pytest.mark.parametrize(
    ("kind", "schema", "metadata"),
    [("ca", SERVER, ca_tables.metadata), ("fleet", FLEET, fleet_tables.metadata)],
)
def test_the_tables_and_the_migrations_agree(
    backend: str, tmp_path: Path, kind: str, schema: migrate.Schema, metadata: sa.MetaData
) -> None:
    with fresh_database(backend, tmp_path, f"{kind}-new.db") as url:
        migrate.upgrade(create_engine(url), schema)
        assert _diff(url, schema, metadata) == []
    with fresh_database(backend, tmp_path, f"{kind}-old.db") as url:
        load_v010(kind, url)
        migrate.upgrade(create_engine(url), schema)
        assert _diff(url, schema, metadata) == []


@pytest.mark.parametrize("schema", [SERVER, FLEET])
def test_concurrent_starts_upgrade_once(
    backend: str, tmp_path: Path, schema: migrate.Schema
) -> None:
    with fresh_database(backend, tmp_path, "new.db") as url:
        engines = [create_engine(url) for _ in range(4)]
        errors: list[BaseException] = []
        gate = threading.Barrier(len(engines))

        def start(engine: sa.Engine) -> None:
            gate.wait()
            try:
                migrate.upgrade(engine, schema)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert migrate.current(engines[0], schema) == migrate.head(schema)
        for engine in engines:
            engine.dispose()


def test_refusing_to_upgrade_names_the_command(ca_url: str, fleet_url: str) -> None:
    load_v010("ca", ca_url)
    load_v010("fleet", fleet_url)
    with pytest.raises(SchemaOutOfDate, match="run `acmekit server db upgrade`"):
        Store.from_url(ca_url, auto_upgrade=False)
    with pytest.raises(SchemaOutOfDate, match="run `acmekit fleet db upgrade`"):
        Inventory.from_url(fleet_url, auto_upgrade=False)
    Inventory.from_url(fleet_url).close()
    Inventory.from_url(fleet_url, auto_upgrade=False).close()  # current: starts


def test_the_db_commands(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    load_v010("ca", f"sqlite:///{state / 'acmekit.db'}")
    fleet_db = f"sqlite:///{tmp_path / 'fleet.db'}"
    load_v010("fleet", fleet_db)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, list(args))
        return result.exit_code, result.output.strip()

    ca_head = migrate.head(SERVER)
    assert run("server", "db", "current", "--state-dir", str(state)) == (
        0,
        f"none (this acmekit needs {ca_head}: run `acmekit server db upgrade`)",
    )
    code, out = run("server", "--state-dir", str(state), "--no-auto-upgrade")
    assert code == 1 and out == (
        f"Error: the CA database is at schema none, this acmekit needs {ca_head}: "
        "run `acmekit server db upgrade`"
    )
    assert run("server", "db", "upgrade", "--state-dir", str(state)) == (
        0,
        f"the CA database went from none to {ca_head}",
    )
    assert run("server", "--state-dir", str(state), "db", "current") == (0, f"{ca_head} (current)")
    code, out = run("server", "db", "current", "--state-dir", str(tmp_path / "nowhere"))
    assert code == 1 and "no CA database" in out
    new = str(tmp_path / "new")  # made by `db upgrade`, for a CA that never upgrades itself
    assert run("server", "db", "upgrade", "--state-dir", new)[0] == 0
    assert run("server", "db", "current", "--state-dir", new) == (0, f"{ca_head} (current)")

    code, out = run("fleet", "worker", "--db", fleet_db, "--server", "https://ca.test/dir",
                    "--no-auto-upgrade")  # fmt: skip
    assert code == 1 and out.endswith("run `acmekit fleet db upgrade`")
    assert run("fleet", "db", "upgrade", "--db", fleet_db) == (
        0,
        "the fleet database went from none to 0002",
    )
    assert run("fleet", "db", "current", "--db", fleet_db) == (0, "0002 (current)")
    code, out = run("fleet", "list", "--db", fleet_db)
    assert code == 0 and "shop.example.net www.shop.example.net" in out
    assert run("fleet", "renew", "--db", fleet_db, "blog.example.net")[0] == 0

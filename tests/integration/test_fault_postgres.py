"""PostgreSQL stops and starts again under a CA with clients issuing: every answer during
the outage is a success or a problem with Retry-After, the clients finish, the CA
reconnects by itself, and the database holds exactly what was issued.

The cluster is the test's own (acmekit_testkit.postgres_cluster), never the shared one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.database import UNAVAILABLE, create_engine
from acmekit.server.schema import certificates, orders
from acmekit.server.store import Store
from acmekit_testkit.acme_raw import Flow, Http01Responder
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.outages import PatientFlow, RecordingAcme, is_try_again
from acmekit_testkit.postgres_cluster import PostgresCluster, postgres_cluster

pytestmark = pytest.mark.postgres

CLIENTS = 4
AFTER = 2  # certificates each client issues, start to end, once the database is back
DOWN = 2.0  # seconds the database stays stopped
ISSUANCE_DELAY = 0.5  # seconds each signature is held back, so that the outage meets one


async def _client(
    i: int, patient: PatientFlow, underway: asyncio.Event, back: asyncio.Event
) -> None:
    """Issue until AFTER certificates were begun and finished after the database was back."""
    n = after = 0
    while after < AFTER:
        began_after = back.is_set()
        order = await patient.issue(f"c{i}-{n}.pg.test")
        assert order["status"] == "valid", order
        underway.set()
        after += began_after
        n += 1


async def _outage(
    cluster: PostgresCluster,
    underway: asyncio.Event,
    finalizing: asyncio.Event,
    back: asyncio.Event,
) -> None:
    """Stop the database while an issuance is under way (ISSUANCE_DELAY holds it back)."""
    await underway.wait()
    finalizing.clear()
    await finalizing.wait()
    await asyncio.to_thread(cluster.stop)
    await asyncio.sleep(DOWN)
    await asyncio.to_thread(cluster.start)
    back.set()


async def test_postgres_restart_under_load_loses_nothing(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    with postgres_cluster() as cluster:
        settings = {"db": cluster.url, "stale_after": 2.0, "finalize_wait": 1.0}
        settings["issuance_delay"] = ISSUANCE_DELAY
        with running_acmekit_server(
            tmp_path,
            dns_port=dns.dns_port,
            http01_port=responder.port,
            settings=settings,
            verbose=False,
        ) as ca:
            acme = RecordingAcme(ca.base_url, str(ca.root_path))
            underway, finalizing, back = asyncio.Event(), asyncio.Event(), asyncio.Event()
            patients = [
                PatientFlow(Flow(acme, responder), finalizing=finalizing) for _ in range(CLIENTS)
            ]
            try:
                await asyncio.gather(
                    _outage(cluster, underway, finalizing, back),
                    *(_client(i, p, underway, back) for i, p in enumerate(patients)),
                )
            finally:
                await acme.close()
            log = ca.log.read_text()
        errors = acme.server_errors()
        assert errors, "no request met the outage"
        assert all(is_try_again(resp) for _, _, resp in errors), errors
        assert all(resp.problem_type == "serverInternal" for _, _, resp in errors)
        assert "Traceback" not in log

        engine = create_engine(cluster.url)
        with engine.begin() as conn:
            order_rows = {r.id: r for r in conn.execute(sa.select(orders))}
            cert_rows = conn.execute(sa.select(certificates)).all()
        engine.dispose()

    issued = [c for c in cert_rows if c.pem is not None]
    serials = [c.serial for c in cert_rows]
    assert len(serials) == len(set(serials)), "a serial was reserved twice"
    assert all(c.order_id in order_rows for c in cert_rows), "a certificate without an order"
    for order_id, row in order_rows.items():
        mine = [c for c in issued if c.order_id == order_id]
        if row.certificate_id is None:
            assert mine == [], f"order {order_id} is not valid but has a certificate"
        else:
            assert [c.id for c in mine] == [row.certificate_id], f"order {order_id}"
    for patient in patients:
        for url, pem in patient.seen.items():
            row = order_rows[url.rsplit("/", 1)[1]]
            assert pem is not None, f"order {url} never became valid"
            cert = next(c for c in issued if c.id == row.certificate_id)
            assert cert.pem == pem


def test_store_drops_every_dead_pooled_connection_at_the_first_disconnect() -> None:
    """The CA's pool has no ping per checkout: after a restart, the first statement meets
    a dead connection and the whole pool is renewed, so the next statements succeed
    although several idle connections died with the server."""
    with postgres_cluster() as cluster:
        store = Store.from_url(cluster.url)
        with store.db.raw(), store.db.raw(), store.db.raw():  # three connections, back to the pool
            pass
        cluster.restart()
        results = []
        for _ in range(3):
            try:
                results.append(store.accounts.account("nobody") is None)
            except UNAVAILABLE:
                results.append(False)
        store.engine.dispose()
    assert results[1:] == [True, True], results

"""Two CA processes on one PostgreSQL database behave as one CA: a nonce is single use
across both, and finalizes racing through both issue exactly one certificate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.database import create_engine
from acmekit.server.schema import certificates
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.dnsserver import DnsServerHandle

pytestmark = pytest.mark.postgres


async def test_two_processes_share_nonces_and_finalize_once(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    with fresh_postgres_database() as db:
        kw = {"dns_port": dns.dns_port, "http01_port": responder.port, "settings": {"db": db}}
        with (
            running_acmekit_server(tmp_path, **kw) as one,  # type: ignore[arg-type]
            running_acmekit_server(tmp_path, **kw) as two,  # type: ignore[arg-type]
        ):
            a = HttpRawAcme(one.base_url, str(one.root_path))
            b = HttpRawAcme(two.base_url, str(two.root_path))
            flow = Flow(a, responder)
            nonce = await a.nonce()
            created = await b.post(
                f"{b.base}/acme/new-account", {"termsOfServiceAgreed": True}, flow.key, nonce=nonce
            )
            assert created.status == 201, created.body
            replay = await a.post(
                f"{a.base}/acme/new-account", {"termsOfServiceAgreed": True}, flow.key, nonce=nonce
            )
            assert replay.problem_type == "badNonce"
            flow.kid = (created.header("location") or "").replace(b.base, a.base)
            resp = await flow.order("cluster.pg.test")
            order_url = resp.header("location") or ""
            await flow.solve(resp.json())
            flow_b = Flow(b, responder, key=flow.key, kid=flow.kid.replace(a.base, b.base))
            results = await asyncio.gather(
                flow.finalize(order_url, ("cluster.pg.test",)),
                flow_b.finalize(order_url.replace(a.base, b.base), ("cluster.pg.test",)),
                flow.finalize(order_url, ("cluster.pg.test",)),
                flow_b.finalize(order_url.replace(a.base, b.base), ("cluster.pg.test",)),
            )
            assert sorted(r.status for r in results) == [200, 403, 403, 403]
            await a.close()
            await b.close()
        engine = create_engine(db)
        with engine.begin() as conn:
            rows = conn.execute(sa.select(certificates)).all()
        engine.dispose()
        assert len(rows) == 1 and rows[0].pem is not None

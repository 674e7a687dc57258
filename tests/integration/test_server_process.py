"""The CA as a real process: state survives a restart, and a SIGKILL during issuance or
validation leaves nothing stuck and no signed certificate unrecorded."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import sqlalchemy as sa

from acmekit.database import create_engine
from acmekit.protocol.challenges import key_authorization
from acmekit.server.schema import certificates
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port
from acmekit_testkit.tcpstub import tcp_server


async def test_state_survives_restart(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    port = free_port()
    kw = {"dns_port": dns.dns_port, "http01_port": responder.port, "port": port}
    with running_acmekit_server(tmp_path, **kw) as first:  # type: ignore[arg-type]
        root_before = first.root_path.read_bytes()
        acme = HttpRawAcme(first.base_url, str(first.root_path))
        flow = Flow(acme, responder)
        order_url, order = await flow.issue("restart.process.test")
        await acme.close()
    with running_acmekit_server(tmp_path, **kw) as second:  # type: ignore[arg-type]
        assert second.root_path.read_bytes() == root_before
        acme = HttpRawAcme(second.base_url, str(second.root_path))
        flow.acme = acme
        again = await flow.account()
        assert again.status == 200  # the account is still there
        assert (await flow.get(order_url)).json()["certificate"] == order["certificate"]
        assert (await flow.get(order["certificate"])).status == 200
        await acme.close()


async def test_sigkill_during_issuance_is_recovered(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    port = free_port()
    slow = {"issuance_delay": 60.0, "finalize_wait": 0.2, "stale_after": 1.0}
    kw = {"dns_port": dns.dns_port, "http01_port": responder.port, "port": port}
    with running_acmekit_server(tmp_path, settings=slow, **kw) as first:  # type: ignore[arg-type]
        acme = HttpRawAcme(first.base_url, str(first.root_path))
        flow = Flow(acme, responder)
        await flow.account()
        resp = await flow.order("killed.process.test")
        order_url = resp.header("location") or ""
        await flow.solve(resp.json())
        fin = await flow.finalize(order_url, ("killed.process.test",))
        assert fin.json()["status"] == "processing"
        first.kill()  # mid-signature: the serial is reserved, nothing is signed
        await acme.close()
    engine = create_engine(f"sqlite:///{tmp_path / 'ca-state' / 'acmekit.db'}")
    with engine.begin() as conn:
        rows = conn.execute(sa.select(certificates)).all()
    assert len(rows) == 1 and rows[0].pem is None
    fast = {"stale_after": 1.0}
    with running_acmekit_server(tmp_path, settings=fast, **kw) as second:  # type: ignore[arg-type]
        acme = HttpRawAcme(second.base_url, str(second.root_path))
        flow.acme = acme
        status = ""
        for _ in range(200):
            status = (await flow.get(order_url)).json()["status"]
            if status != "processing":
                break
            await asyncio.sleep(0.1)
        assert status == "valid"
        await acme.close()
    with engine.begin() as conn:
        rows = conn.execute(sa.select(certificates)).all()
    issued = [r for r in rows if r.pem is not None]
    assert len(issued) == 1 and not issued[0].abandoned
    assert [r.abandoned for r in rows if r.pem is None] == [True]


async def test_validation_cut_short_by_sigkill_passes_caa_accounturi_on_recovery(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    """RFC 8657: the resumed validation names the account by the URL its client uses,
    though no base_url is configured (URLs follow the Host header)."""
    port, name = free_port(), f"resumed-{secrets.token_hex(4)}.process.test"
    kw = {"dns_port": dns.dns_port, "port": port}
    async with tcp_server() as silent:  # http-01 that never answers: validation in flight
        slow = {"validation_timeout": 60.0}
        with running_acmekit_server(tmp_path, http01_port=silent, settings=slow, **kw) as first:  # type: ignore[arg-type]
            acme = HttpRawAcme(first.base_url, str(first.root_path))
            flow = Flow(acme, responder)
            await flow.account()
            caa = [{"tag": "issue", "value": f"acmekit; accounturi={flow.kid}"}]
            dns.post_sync("/add-caa", {"host": f"{name}.", "policies": caa})
            authz_url = (await flow.order(name)).json()["authorizations"][0]
            authz = (await flow.get(authz_url)).json()
            ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
            responder.tokens[ch["token"]] = key_authorization(ch["token"], flow.key)
            started = await acme.post(ch["url"], {}, flow.key, flow.kid)
            assert started.json()["status"] == "processing"
            first.kill()
            await acme.close()
    fast = {"stale_after": 1.0}
    with running_acmekit_server(
        tmp_path, http01_port=responder.port, settings=fast, **kw
    ) as second:  # type: ignore[arg-type]
        flow.acme = acme = HttpRawAcme(second.base_url, str(second.root_path))
        status = "pending"
        for _ in range(200):
            authz = (await flow.get(authz_url)).json()
            status = authz["status"]
            if status != "pending":
                break
            await asyncio.sleep(0.1)
        assert status == "valid", authz
        await acme.close()

"""The CA as a real process: state survives a restart, and a SIGKILL during issuance or
validation leaves nothing stuck and no signed certificate unrecorded."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from acmekit.database import create_engine
from acmekit.protocol.challenges import key_authorization
from acmekit.server.schema import certificates
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme, Resp
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


class HostAcme(HttpRawAcme):
    """HttpRawAcme that names the CA by `host` in its URLs and Host header while it
    connects to 127.0.0.1 (no name is looked up): a client that knows the CA as `host`."""

    def __init__(self, host: str, port: int, root_pem: str) -> None:
        super().__init__(f"https://{host}:{port}", root_pem)
        self._authority = f"{host}:{port}"
        self._connect = f"https://127.0.0.1:{port}"

    async def request(
        self, method: str, url: str, body: bytes = b"", content_type: str | None = None
    ) -> Resp:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Host": self._authority}
        if content_type:
            headers["Content-Type"] = content_type
        target = self._connect + url.removeprefix(self.base)
        async with self._session.request(
            method, target, data=body or None, headers=headers, ssl=self._ssl
        ) as resp:
            hdrs: dict[str, list[str]] = {}
            for k, v in resp.headers.items():
                hdrs.setdefault(k.lower(), []).append(v)
            return Resp(resp.status, hdrs, await resp.read())


async def test_validations_cut_short_by_sigkill_check_caa_accounturi_as_their_clients_asked(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    """RFC 8657 §3: a validation resumed by another process checks CAA `accounturi`
    against the account URL its client used, though no base_url is configured (URLs
    follow the Host header): two clients that know the CA by different names both pass
    with their own URL, and a record naming another URL still fails."""
    port, tag = free_port(), secrets.token_hex(4)
    kw = {"dns_port": dns.dns_port, "port": port}
    root = str(tmp_path / "ca-state" / "root.pem")
    started: list[tuple[Flow, str, str]] = []  # flow, name, authorization URL
    async with tcp_server() as silent:  # http-01 that never answers: validation in flight
        slow = {"validation_timeout": 60.0}
        with running_acmekit_server(tmp_path, http01_port=silent, settings=slow, **kw) as first:  # type: ignore[arg-type]
            assert first.root_path == Path(root)
            for host, wrong in (("127.0.0.1", False), ("localhost", False), ("localhost", True)):
                flow = Flow(HostAcme(host, port, root), responder)
                await flow.account()
                assert flow.kid.startswith(f"https://{host}:{port}/")
                name = (
                    f"{'wrong' if wrong else 'right'}-{host.replace('.', '-')}-{tag}.process.test"
                )
                uri = flow.kid + ("-not-this-one" if wrong else "")
                caa = [{"tag": "issue", "value": f"acmekit; accounturi={uri}"}]
                dns.post_sync("/add-caa", {"host": f"{name}.", "policies": caa})
                authz_url = (await flow.order(name)).json()["authorizations"][0]
                authz = (await flow.get(authz_url)).json()
                ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
                responder.tokens[ch["token"]] = key_authorization(ch["token"], flow.key)
                resp = await flow.acme.post(ch["url"], {}, flow.key, flow.kid)
                assert resp.json()["status"] == "processing"
                started.append((flow, name, authz_url))
            first.kill()
            for flow, _, _ in started:
                await flow.acme.close()
    fast = {"stale_after": 1.0}
    with running_acmekit_server(
        tmp_path, http01_port=responder.port, settings=fast, **kw
    ) as second:  # type: ignore[arg-type]
        outcomes = {}
        for flow, name, authz_url in started:
            host = flow.acme.base.removeprefix("https://").split(":")[0]
            flow.acme = HostAcme(host, port, str(second.root_path))
            authz = {"status": "pending"}
            for _ in range(200):
                authz = (await flow.get(authz_url)).json()
                if authz["status"] != "pending":
                    break
                await asyncio.sleep(0.1)
            outcomes[name.split("-")[0] + "-" + host] = authz
            await flow.acme.close()
    assert outcomes["right-127.0.0.1"]["status"] == "valid", outcomes
    assert outcomes["right-localhost"]["status"] == "valid", outcomes
    wrong = outcomes["wrong-localhost"]
    assert wrong["status"] == "invalid", wrong
    (error,) = [c["error"] for c in wrong["challenges"] if c.get("error")]
    assert error["type"] == "urn:ietf:params:acme:error:caa" and "accounturi" in error["detail"]

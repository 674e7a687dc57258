"""The CA as a real process with CT on, SIGKILLed after it signed a precertificate and
while a log holds its answer: the next process finishes the certificate under the same
serial, with the SCTs of both logs, and no serial is abandoned."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509

from acmekit.database import create_engine
from acmekit.protocol.ctpolicy import corresponds, embedded_scts
from acmekit.server.schema import certificates
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.ctlog import ca_hierarchy, running_ct_log
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port


async def test_sigkill_between_precertificate_and_certificate_is_recovered(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    state = tmp_path / "ca-state"
    ca_hierarchy(state)
    engine = create_engine(f"sqlite:///{state / 'acmekit.db'}")

    def rows() -> list[sa.Row[tuple[object, ...]]]:
        with engine.begin() as conn:
            return list(conn.execute(sa.select(certificates)).all())

    with (
        running_ct_log(tmp_path / "log-a", state / "root.pem") as a,
        running_ct_log(tmp_path / "log-b", state / "root.pem") as b,
    ):
        lists = [str(a.log_list), str(b.log_list)]
        kw = {
            "dns_port": dns.dns_port,
            "http01_port": responder.port,
            "port": free_port(),
            "state_dir": state,
        }
        slow = {"finalize_wait": 0.2, "stale_after": 1.0, "ct": {"log_lists": lists, "timeout": 60}}
        os.kill(b.process.pid, signal.SIGSTOP)  # log b takes the connection, never answers
        try:
            with running_acmekit_server(tmp_path, settings=slow, **kw) as first:  # type: ignore[arg-type]
                acme = HttpRawAcme(first.base_url, str(first.root_path))
                flow = Flow(acme, responder)
                await flow.account()
                resp = await flow.order("killed.ct.test")
                order_url = resp.header("location") or ""
                await flow.solve(resp.json())
                fin = await flow.finalize(order_url, ("killed.ct.test",))
                assert fin.json()["status"] == "processing"
                for _ in range(200):
                    if any(r.precert is not None for r in rows()):
                        break
                    await asyncio.sleep(0.05)
                first.kill()  # the precertificate is signed and kept; no certificate
                await acme.close()
        finally:
            os.kill(b.process.pid, signal.SIGCONT)
        (kept,) = rows()
        assert kept.precert is not None and kept.pem is None and not kept.abandoned

        fast = {"stale_after": 1.0, "ct": {"log_lists": lists, "timeout": 10}}
        with running_acmekit_server(tmp_path, settings=fast, **kw) as second:  # type: ignore[arg-type]
            acme = HttpRawAcme(second.base_url, str(second.root_path))
            flow.acme = acme
            status, order = "", {}
            for _ in range(300):
                order = (await flow.get(order_url)).json()
                status = order["status"]
                if status != "processing":
                    break
                await asyncio.sleep(0.1)
            assert status == "valid", order
            leaf = x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)[0]
            await acme.close()
    (done,) = rows()
    assert done.id == kept.id and done.pem is not None and not done.abandoned
    assert format(leaf.serial_number, "x") == done.serial
    assert corresponds(x509.load_der_x509_certificate(bytes(kept.precert)), leaf)
    assert len(embedded_scts(leaf)) == 2

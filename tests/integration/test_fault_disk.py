"""The state directory's disk fills up under a running CA on SQLite: requests that write
get a 503 problem with Retry-After, nothing is left half-written, and the CA issues
again once there is room."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from acmekit.database import create_engine
from acmekit.server.schema import certificates, orders
from acmekit_testkit.acme_raw import Flow, Http01Responder
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.outages import RecordingAcme, is_try_again
from acmekit_testkit.tmpfs import fill, small_tmpfs

TRIES = 200  # new orders sent to a full disk before the test gives up on a refusal


def _pem_files(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(state.rglob("*.pem"))}


async def test_full_disk_refuses_writes_cleanly_and_issuance_resumes(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    state = tmp_path / "state"
    with small_tmpfs(state, "16m"):
        kw = {"dns_port": dns.dns_port, "http01_port": responder.port, "state_dir": state}
        with running_acmekit_server(tmp_path, **kw, verbose=False) as ca:  # type: ignore[arg-type]
            acme = RecordingAcme(ca.base_url, str(ca.root_path))
            flow = Flow(acme, responder)
            await flow.issue("before.disk.test")
            ready = await flow.order("ready.disk.test")
            ready_url = ready.header("location") or ""
            await flow.solve(ready.json())
            keys_and_certs = _pem_files(state)
            filler = fill(state)
            refused = None
            for n in range(TRIES):
                resp = await flow.order(f"full-{n}.disk.test")
                if resp.status != 201:
                    refused = resp
                    break
            assert refused is not None, f"{TRIES} orders went through on a full disk"
            assert is_try_again(refused), refused.body
            assert refused.problem_type == "serverInternal"
            finalized = await flow.finalize(ready_url, ("ready.disk.test",))
            assert is_try_again(finalized), finalized.body
            assert (await flow.get(ready_url)).json()["status"] == "ready"
            filler.unlink()
            finalized = await flow.finalize(ready_url, ("ready.disk.test",))
            assert finalized.json()["status"] == "valid", finalized.body
            order_url, done = await flow.issue("after.disk.test")
            assert done["status"] == "valid", done
            pem = (await flow.get(done["certificate"])).body.decode()
            await acme.close()
            log = ca.log.read_text()
        assert all(is_try_again(r) for _, _, r in acme.server_errors())
        assert "Traceback" not in log
        assert _pem_files(state) == keys_and_certs
        engine = create_engine(f"sqlite:///{state / 'acmekit.db'}")
        with engine.begin() as conn:
            cert_rows = conn.execute(sa.select(certificates)).all()
            order_ids = {r.id for r in conn.execute(sa.select(orders.c.id))}
        engine.dispose()
    assert all(c.pem is not None or c.abandoned for c in cert_rows)
    assert all(c.order_id in order_ids for c in cert_rows)
    assert pem in {c.pem for c in cert_rows}
    assert order_url.rsplit("/", 1)[1] in order_ids

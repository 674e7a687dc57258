"""A poll of a decided order (RFC 8555 §7.1.3) does not read its authorizations.

An order with a certificate, an error or a finalize claim has a status and an error of
its own (§7.1.6; messages.order_status, OrderView.error), and its `authorizations` are
the URLs of its own `authz_ids`: the poll's one statement joins no authorization for
it. To see that none is read, the issued order's authorization is spoiled in the
database (a status no record can be made from): the poll answers the same document as
before, where reading the authorization failed (a 500). An order not yet decided is
still answered from its authorizations (pending, then ready).
"""

from __future__ import annotations

from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Flow


def _spoil_authorization(ca: Assembly, authz_url: str) -> None:
    authz_id = authz_url.rsplit("/", 1)[-1]
    with ca.store.db.raw() as c:
        changed = c.run(
            "UPDATE authorizations SET stored_status = ? WHERE id = ?", ("spoiled", authz_id)
        )
    assert changed == 1


async def test_a_decided_orders_poll_reads_no_authorization(ca: Assembly, flow: Flow) -> None:
    await flow.account()
    resp = await flow.order("poll.example.test")
    assert resp.status == 201, resp.body
    order_url, order = resp.header("location") or "", resp.json()
    assert (await flow.get(order_url)).json()["status"] == "pending"
    await flow.solve(order)
    assert (await flow.get(order_url)).json()["status"] == "ready"  # from the authorization
    done = await flow.finalize(order_url, ("poll.example.test",))
    assert done.status == 200, done.body
    await ca.app.authority.drain()
    before = await flow.get(order_url)
    assert before.status == 200 and before.json()["status"] == "valid", before.body

    _spoil_authorization(ca, order["authorizations"][0])
    after = await flow.get(order_url)
    assert after.status == 200, after.body
    assert after.body == before.body
    assert after.header("content-type") == before.header("content-type")
    assert after.header("location") == before.header("location") == order_url
    # The authorization itself is read, and fails, as before.
    assert (await flow.get(order["authorizations"][0])).status == 500


async def test_an_open_orders_poll_still_reads_its_authorizations(ca: Assembly, flow: Flow) -> None:
    await flow.account()
    resp = await flow.order("open.example.test")
    assert resp.status == 201, resp.body
    order_url, order = resp.header("location") or "", resp.json()
    _spoil_authorization(ca, order["authorizations"][0])
    assert (await flow.get(order_url)).status == 500  # pending: its status is theirs

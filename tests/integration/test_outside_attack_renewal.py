"""A renewal's exemption from the failed-validation limit, against the CA as a process
over HTTPS on loopback: it covers the names the replaced certificate held, not any name
an order with `replaces` (RFC 9773 §5) adds beside one of them."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from acmekit.protocol import ari
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle

HELD = "held.renewal.outside.test"
TARGET = "target.renewal.outside.test"  # someone else's host, where validations fail


async def test_names_added_to_a_renewal_keep_the_failed_validation_limit(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port, http01_port=responder.port) as ca:
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        flow = Flow(acme, responder)
        _, done = await flow.issue(HELD)
        leaf = x509.load_pem_x509_certificates((await flow.get(done["certificate"])).body)[0]
        replaces = str(ari.cert_id_of(leaf))

        refused = None
        for attempt in range(6):  # the limit is 5 failures per account and host an hour
            order = await acme.post(
                f"{acme.base}/acme/new-order",
                {
                    "identifiers": [{"type": "dns", "value": n} for n in (HELD, TARGET)],
                    "replaces": replaces,
                },
                flow.key,
                flow.kid,
            )
            assert order.status == 201, (attempt, order.body)
            urls = order.json()["authorizations"]
            authzs = [(await flow.get(u)).json() for u in urls]
            target = next(a for a in authzs if a["identifier"]["value"] == TARGET)
            ch = next(c for c in target["challenges"] if c["type"] == "http-01")
            # The responder does not know the token: the validation fails (404).
            resp = await acme.post(ch["url"], {}, flow.key, flow.kid)
            if resp.status == 429:
                refused = attempt
                assert resp.problem_type == "rateLimited"
                break
            assert resp.status == 200 and resp.json()["status"] == "invalid", resp.body
        assert refused == 5, "a name added to a renewal escaped the failed-validation limit"
        await acme.close()

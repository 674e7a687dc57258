"""Revocation by someone who does not hold the certificate's key (RFC 8555 §7.6), against
the CA as a process over HTTPS on loopback: an account that validated the names may
revoke another account's certificate, but not have its key blocked for keyCompromise."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.protocol import jose
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle

NAME = "shared.revoke.outside.test"


async def test_another_account_cannot_block_a_subscribers_key(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port, http01_port=responder.port) as ca:
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        subscriber, other = Flow(acme, responder), Flow(acme, responder)
        await subscriber.account()
        await other.account()
        # The subscriber's certificate, for a key it also uses elsewhere.
        order = await subscriber.order(NAME)
        await subscriber.solve(order.json())
        cert_key, csr = make_csr(NAME)
        fin = await acme.post(
            order.json()["finalize"], {"csr": jose.b64e(csr)}, subscriber.key, subscriber.kid
        )
        pem = (await subscriber.get(fin.json()["certificate"])).body
        leaf = x509.load_pem_x509_certificates(pem)[0]
        der = jose.b64e(leaf.public_bytes(serialization.Encoding.DER))
        # Another account proves control of the name (a later owner, a co-tenant).
        theirs = await other.order(NAME)
        await other.solve(theirs.json())

        url = f"{acme.base}/acme/revoke-cert"
        claimed = await acme.post(url, {"certificate": der, "reason": 1}, other.key, other.kid)
        assert (claimed.status, claimed.problem_type) == (400, "badRevocationReason"), claimed.body
        # The key is not blocked: it still makes an account, and a certificate.
        as_account = await acme.post(url.replace("revoke-cert", "new-account"), {}, cert_key)
        assert as_account.status == 201, as_account.body
        again = await subscriber.order(NAME)
        await subscriber.solve(again.json())
        reuse = await acme.post(
            again.json()["finalize"],
            {"csr": jose.b64e(csr)},
            subscriber.key,
            subscriber.kid,
        )
        assert reuse.status == 200 and reuse.json()["status"] == "valid", reuse.body

        # Revocation itself stays open to the account that validated the names (§7.6),
        # and keyCompromise to the key's holder.
        stated = await acme.post(url, {"certificate": der, "reason": 5}, other.key, other.kid)
        assert stated.status == 200, stated.body
        await acme.close()


async def test_a_subscriber_cannot_put_a_hold_on_the_cas_crl(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    """RFC 8555 §7.6 lets the CA refuse reasons; the Baseline Requirements (§7.2.2) allow
    a subscriber's certificate on a CRL only as keyCompromise, affiliationChanged,
    superseded, cessationOfOperation, privilegeWithdrawn or no reason. certificateHold
    (a suspension, §4.9.13), removeFromCRL (delta CRLs only, RFC 5280 §5.3.1) and the
    authorities' cACompromise and aACompromise were taken from anyone's request."""
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port, http01_port=responder.port) as ca:
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        subscriber = Flow(acme, responder)
        _, done = await subscriber.issue("hold.revoke.outside.test")
        pem = (await subscriber.get(done["certificate"])).body
        leaf = x509.load_pem_x509_certificates(pem)[0]
        der = jose.b64e(leaf.public_bytes(serialization.Encoding.DER))
        url = f"{acme.base}/acme/revoke-cert"
        for reason in (2, 6, 8, 10):
            body = {"certificate": der, "reason": reason}
            resp = await acme.post(url, body, subscriber.key, subscriber.kid)
            assert (resp.status, resp.problem_type) == (400, "badRevocationReason"), resp.body
        ok = await acme.post(url, {"certificate": der, "reason": 4}, subscriber.key, subscriber.kid)
        assert ok.status == 200, ok.body
        await acme.close()

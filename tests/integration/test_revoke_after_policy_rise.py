"""A certificate whose RSA key the CA's key policy no longer accepts (its minimum size
raised after issuance) can still be revoked by a request its key signs (RFC 8555 §7.6):
the check made on an embedded jwk before its signature is verified refuses only what
makes verifying costly (exponent, largest size), not what a later policy refuses."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from acmekit.protocol import jose
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle

NAME = "rsa2048.revoke.test"


def _csr(key: rsa.RSAPrivateKey) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    san = x509.SubjectAlternativeName([x509.DNSName(NAME)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    csr = builder.add_extension(san, critical=False).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


async def _issue(flow: Flow, key: rsa.RSAPrivateKey) -> bytes:
    """A certificate for NAME with `key`, as DER."""
    await flow.account()
    resp = await flow.order(NAME)
    assert resp.status == 201, resp.body
    await flow.solve(resp.json())
    done = await flow.acme.post(
        resp.json()["finalize"], {"csr": jose.b64e(_csr(key))}, flow.key, flow.kid
    )
    assert done.status == 200 and done.json()["status"] == "valid", done.body
    pem = (await flow.get(done.json()["certificate"])).body
    return x509.load_pem_x509_certificates(pem)[0].public_bytes(serialization.Encoding.DER)


async def test_a_certificate_key_below_a_raised_minimum_still_revokes(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    state = tmp_path / "state"
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, state_dir=state
    ) as ca:
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        try:
            der = await _issue(Flow(acme, responder), key)
        finally:
            await acme.close()

    raised = {"keys": {"rsa_min_bits": 3072}}
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, state_dir=state,
        settings=raised,
    ) as ca:  # fmt: skip
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        try:
            # The raised minimum holds for new keys...
            refused = await Flow(acme, responder, key).account()
            assert (refused.status, refused.problem_type) == (400, "badPublicKey")
            assert "3072" in refused.json()["detail"]
            # ...but the certificate's own key still revokes its certificate.
            url = f"{ca.base_url}/acme/revoke-cert"
            payload = {"certificate": jose.b64e(der), "reason": 1}
            done = await acme.post(url, payload, key)
            assert done.status == 200, done.body
            again = await acme.post(url, payload, key)
            assert (again.status, again.problem_type) == (400, "alreadyRevoked")
        finally:
            await acme.close()

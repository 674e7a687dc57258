"""CRLs from a real `acmekit server` process: each certificate names its shard's CRL,
the CRL is served on plain HTTP by the second listener, `openssl crl` reads it, and
`openssl verify -crl_check` refuses a revoked certificate and accepts another."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from acmekit.protocol import jose
from acmekit_testkit import crls
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port


async def fetch(url: str) -> bytes:
    return await crls.fetch(url, "application/pkix-crl")


def verify(root: Path, chain: list[x509.Certificate], crl_der: bytes, work: Path) -> str:
    (work / "leaf.pem").write_bytes(chain[0].public_bytes(Encoding.PEM))
    (work / "inter.pem").write_bytes(chain[1].public_bytes(Encoding.PEM))
    crl = x509.load_der_x509_crl(crl_der)
    (work / "crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
    result = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", str(root),
         "-untrusted", str(work / "inter.pem"), "-CRLfile", str(work / "crl.pem"),
         str(work / "leaf.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return f"rc={result.returncode} {result.stdout} {result.stderr}"


def crl_text(der: bytes, work: Path) -> str:
    (work / "crl.der").write_bytes(der)
    return subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-noout", "-text", "-in", str(work / "crl.der")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


async def _issue(flow: Flow, name: str) -> list[x509.Certificate]:
    _, order = await flow.issue(name)
    return x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)


async def test_revoked_certificate_is_listed_and_refused(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    crl_port = free_port()
    settings = {"crl": {"listen": f"127.0.0.1:{crl_port}"}}
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, settings=settings
    ) as server:
        acme = HttpRawAcme(server.base_url, str(server.root_path))
        flow = Flow(acme, responder)
        try:
            bad = await _issue(flow, "bad.crl.test")
            good = await _issue(flow, "good.crl.test")
            url = crls.crl_url(bad[0])
            assert url.startswith(f"http://127.0.0.1:{crl_port}/crl/") and url.endswith(".crl")
            before = x509.load_der_x509_crl(await fetch(url))
            body = {"certificate": jose.b64e(bad[0].public_bytes(Encoding.DER)), "reason": 1}
            revoked = await acme.post(f"{acme.base}/acme/revoke-cert", body, flow.key, flow.kid)
            assert revoked.status == 200, revoked.body
            der = await crls.fetch_listing(url, bad[0].serial_number)
            good_der = await fetch(crls.crl_url(good[0]))
        finally:
            await acme.close()
    after = x509.load_der_x509_crl(der)
    number = x509.CRLNumber
    assert after.extensions.get_extension_for_class(number).value.crl_number > (
        before.extensions.get_extension_for_class(number).value.crl_number
    )
    assert before.get_revoked_certificate_by_serial_number(bad[0].serial_number) is None
    assert after.get_revoked_certificate_by_serial_number(bad[0].serial_number) is not None
    text = crl_text(der, tmp_path)
    assert format(bad[0].serial_number, "X") in text.replace(":", "").upper()
    assert "Key Compromise" in text and "CRL Number" in text
    assert "Authority Key Identifier" in text and "Next Update" in text
    refused = verify(server.root_path, bad, der, tmp_path)
    assert "rc=2" in refused and "certificate revoked" in refused, refused
    accepted = verify(server.root_path, good, good_der, tmp_path)
    assert "rc=0" in accepted and ": OK" in accepted, accepted

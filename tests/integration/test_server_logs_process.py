"""`acmekit server` run without -v still reports its work: one INFO line per validation
and per issuance follows the banner."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port


async def test_server_without_verbose_logs_issuance_at_info(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    settings = {"crl": {"listen": f"127.0.0.1:{free_port()}"}}
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, settings=settings,
        verbose=False,
    ) as server:  # fmt: skip
        acme = HttpRawAcme(server.base_url, str(server.root_path))
        try:
            flow = Flow(acme, responder)
            _, order = await flow.issue("quiet.log.test")
            leaf = x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)[0]
        finally:
            await acme.close()
    log = server.log.read_text()
    assert "INFO acmekit.server.authority: challenge" in log, log
    serial = format(leaf.serial_number, "x")
    assert "http-01 for quiet.log.test" in log, log
    assert f"issued serial {serial} for quiet.log.test" in log, log
    assert " DEBUG " not in log

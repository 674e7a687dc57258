"""NUL characters from a client's JSON, against the CA as a process over HTTPS on
loopback, on SQLite and on PostgreSQL: PostgreSQL's text cannot hold a NUL, and a
statement carrying one fails, so what the CA looks up or stores by a client's string
must never carry one (else a 500, where RFC 8555 §6.7 wants a problem of the right type)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol import jose
from acmekit_testkit.acme_raw import HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.tiers import BACKEND_PARAMS

JOSE = "application/jose+json"


@pytest.fixture(params=BACKEND_PARAMS)
def ca_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, "ca.db") as url:
        yield url


def _signed(key: ec.EllipticCurvePrivateKey, header: dict[str, object], payload: bytes) -> bytes:
    p64, b64 = jose.b64e(json.dumps(header).encode()), jose.b64e(payload)
    sig = jose.raw_sign(key, "ES256", f"{p64}.{b64}".encode())
    return json.dumps({"protected": p64, "payload": b64, "signature": jose.b64e(sig)}).encode()


async def test_nul_in_a_kid_or_an_eab_kid(tmp_path: Path, dns: DnsServerHandle, ca_db: str) -> None:
    settings = {"db": ca_db}
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port, settings=settings) as ca:
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        key = ec.generate_private_key(ec.SECP256R1())
        new_account = f"{acme.base}/acme/new-account"

        # A kid naming no account: looked up by its id, which held the NUL.
        url = f"{acme.base}/acme/new-order"
        header = {
            "alg": "ES256",
            "kid": f"{acme.base}/acme/acct/\x00x",
            "nonce": await acme.nonce(),
            "url": url,
        }
        resp = await acme.request("POST", url, _signed(key, header, b"{}"), JOSE)
        assert (resp.status, resp.problem_type) == (400, "accountDoesNotExist"), resp.body

        # An EAB kid: looked up among the database's keys.
        eab_header = {"alg": "HS256", "kid": "\x00x", "url": new_account}
        eab = {
            "protected": jose.b64e(json.dumps(eab_header).encode()),
            "payload": jose.b64e(json.dumps(jose.jwk_from_key(key)).encode()),
            "signature": jose.b64e(bytes(32)),
        }
        payload = json.dumps({"termsOfServiceAgreed": True, "externalAccountBinding": eab})
        header = {
            "alg": "ES256",
            "jwk": jose.jwk_from_key(key),
            "nonce": await acme.nonce(),
            "url": new_account,
        }
        resp = await acme.request("POST", new_account, _signed(key, header, payload.encode()), JOSE)
        assert (resp.status, resp.problem_type) == (403, "unauthorized"), resp.body

        await acme.close()

"""The account key as the CA keeps it, against the CA as a process over HTTPS on
loopback: a JWK spelled with a non-minimal RSA modulus (leading zero octets, which
RFC 7518 §6.3.1.1 forbids and some libraries still emit) is the same key, and the CA
keeps it in the key's own spelling, so every thumbprint it computes (RFC 7638) is the
key's."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from acmekit.client.persist import make_record
from acmekit.protocol import jose
from acmekit_testkit.acme_raw import HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle

ISSUER = "ca.jwk.outside.test"
PERSIST = {"caa_identities": [ISSUER], "issuer_domain_names": [ISSUER], "dns_persist_01": True}


async def test_a_zero_padded_rsa_modulus_is_kept_as_the_keys_own_jwk(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port, settings=PERSIST) as ca:
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        key = rsa.generate_private_key(65537, 2048)
        jwk = jose.jwk_from_key(key)
        jwk["n"] = jose.b64e(b"\x00\x00\x00" + jose.b64d(jwk["n"]))
        url = f"{acme.base}/acme/new-account"
        header = {"alg": "RS256", "jwk": jwk, "nonce": await acme.nonce(), "url": url}
        p64 = jose.b64e(json.dumps(header).encode())
        b64 = jose.b64e(b'{"termsOfServiceAgreed": true}')
        sig = jose.raw_sign(key, "RS256", f"{p64}.{b64}".encode())
        doc = {"protected": p64, "payload": b64, "signature": jose.b64e(sig)}
        created = await acme.request("POST", url, json.dumps(doc).encode(), "application/jose+json")
        assert created.status == 201, created.body
        kid = created.header("location") or ""

        # dns-persist-01 names the account by a hash over its key's thumbprint: the
        # record a client makes from its key validates.
        name = f"{secrets.token_hex(4)}.jwk.outside.test"
        prefix = (await acme.directory())["meta"]["accountHashPrefix"]
        record = make_record(
            name, account_url=kid, account_key=key, account_hash_prefix=prefix, issuers=[ISSUER]
        )
        await dns.set_txt(record.name + ".", record.value)
        payload = {"identifiers": [{"type": "dns", "value": name}]}
        order = await acme.post(f"{acme.base}/acme/new-order", payload, key, kid)
        assert order.status == 201, order.body
        authz = (await acme.post(order.json()["authorizations"][0], None, key, kid)).json()
        ch = next(c for c in authz["challenges"] if c["type"] == "dns-persist-01")
        answer = await acme.post(ch["url"], {}, key, kid)
        assert answer.status == 200 and answer.json()["status"] == "valid", answer.body
        await acme.close()


async def test_an_ed25519_key_of_small_order_is_refused(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
    """With the identity point as the public key, the signature R = identity, S = 0
    verifies for every message (OpenSSL does not refuse small-order keys): an account
    anyone could sign for, whoever registered it. The key rule refuses such points."""
    identity = bytes([1]) + bytes(31)
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port) as ca:
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        url = f"{acme.base}/acme/new-account"
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": jose.b64e(identity)}
        header = {"alg": "EdDSA", "jwk": jwk, "nonce": await acme.nonce(), "url": url}
        p64 = jose.b64e(json.dumps(header).encode())
        b64 = jose.b64e(b'{"termsOfServiceAgreed": true}')
        doc = {"protected": p64, "payload": b64, "signature": jose.b64e(identity + bytes(32))}
        resp = await acme.request("POST", url, json.dumps(doc).encode(), "application/jose+json")
        assert (resp.status, resp.problem_type) == (400, "badPublicKey"), resp.body
        assert "small order" in resp.json()["detail"]
        await acme.close()

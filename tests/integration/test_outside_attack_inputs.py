"""An outside attacker's malformed input to the CA as a process, over HTTPS on loopback:
each gets a problem document of the right type (RFC 8555 §6.7, RFC 7807), never a 500
and never an answer to a request the CA should not have taken as it was."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from acmekit.protocol import jose
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port

HTTP01_PORT = free_port()
JOSE = "application/jose+json"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle) -> Iterator[ServerHandle]:
    work = tmp_path_factory.mktemp("outside-inputs")
    # An account per test, all from 127.0.0.1: more than new_accounts_per_ip's 10.
    accounts = {"new_accounts_per_ip": {"count": 1000, "period": 10800}}
    with running_acmekit_server(
        work, dns_port=dns.dns_port, http01_port=HTTP01_PORT, settings={"rate_limits": accounts}
    ) as server:
        yield server


@pytest.fixture
async def flow(ca: ServerHandle) -> AsyncIterator[Flow]:
    acme = HttpRawAcme(ca.base_url, str(ca.root_path))
    flow = Flow(acme, Http01Responder(port=HTTP01_PORT))
    assert (await flow.account()).status == 201
    yield flow
    await acme.close()


async def test_an_orders_page_past_int64_is_malformed_not_a_500(flow: Flow) -> None:
    """§7.1.2.1's page URL names a creation time; one past the BIGINT column's range
    made the database driver raise (OverflowError on SQLite)."""
    account_id = flow.kid.rsplit("/", 1)[1]
    for created in ("9999999999999999999", "9223372036854775808"):
        url = f"{flow.acme.base}/acme/acct-orders/{account_id}~{created}-x"
        resp = await flow.get(url)
        assert (resp.status, resp.problem_type) == (400, "malformed"), resp.body
    largest = f"{flow.acme.base}/acme/acct-orders/{account_id}~9223372036854775807-x"
    resp = await flow.get(largest)
    assert resp.status == 200 and resp.json() == {"orders": []}


async def test_a_jws_url_must_name_the_query_too(flow: Flow) -> None:
    """§6.4: the `url` header is the exact URL the request went to; a JWS signed for
    newOrder is not good at newOrder with a query the signer never saw."""
    base = flow.acme.base
    payload = {"identifiers": [{"type": "dns", "value": "query.outside.test"}]}
    signed = jose.sign(
        flow.key, payload, url=f"{base}/acme/new-order", nonce=await flow.acme.nonce(), kid=flow.kid
    )
    body = json.dumps(signed).encode()
    resp = await flow.acme.request("POST", f"{base}/acme/new-order?x=1", body, JOSE)
    assert (resp.status, resp.problem_type) == (403, "unauthorized"), resp.body
    exact = await flow.acme.post(f"{base}/acme/new-order?x=1", payload, flow.key, flow.kid)
    assert exact.status == 201, exact.body


@pytest.mark.parametrize("part", ["body", "protected", "payload"])
async def test_json_that_is_not_utf8_is_malformed(flow: Flow, part: str) -> None:
    """RFC 8259 §8.1: JSON between systems is UTF-8; Python's parser also reads UTF-16
    and UTF-32, which no other reader of the same bytes would take for this JSON."""
    base = flow.acme.base
    url = f"{base}/acme/new-order"
    payload = json.dumps({"identifiers": [{"type": "dns", "value": "utf16.outside.test"}]})
    header = {"alg": "ES256", "kid": flow.kid, "nonce": await flow.acme.nonce(), "url": url}
    protected = json.dumps(header).encode("utf-16" if part == "protected" else "utf-8")
    body_payload = payload.encode("utf-16" if part == "payload" else "utf-8")
    p64, b64 = jose.b64e(protected), jose.b64e(body_payload)
    sig = jose.raw_sign(flow.key, "ES256", f"{p64}.{b64}".encode())
    doc = json.dumps({"protected": p64, "payload": b64, "signature": jose.b64e(sig)})
    body = doc.encode("utf-16" if part == "body" else "utf-8")
    resp = await flow.acme.request("POST", url, body, JOSE)
    assert (resp.status, resp.problem_type) == (400, "malformed"), resp.body
    assert "JSON" in resp.json()["detail"]


@pytest.mark.parametrize("value", ["::1%1", "::1%lo", "2606:4700::1%eth0"])
async def test_an_ip_identifier_with_a_zone_is_malformed(flow: Flow, value: str) -> None:
    """RFC 8738 §3: an IP identifier is an address in RFC 1123 / RFC 5952 text, which has
    no zone index; "::1%1" was taken as an identifier of its own, apart from "::1"."""
    resp = await flow.order(value, profile="shortlived")
    assert (resp.status, resp.problem_type) == (400, "malformed"), resp.body
    assert resp.json()["identifier"] == {"type": "ip", "value": value}
    plain = await flow.order("::1", profile="shortlived")
    assert plain.status == 201, plain.body


@pytest.mark.parametrize("resource", ["new-account", "revoke-cert"])
async def test_an_rsa_jwk_with_a_costly_exponent_is_refused_before_verifying(
    flow: Flow, resource: str
) -> None:
    """Anyone may send a JWS with a `jwk`. An RSA key of 3072 bits whose exponent is
    nearly as long made the verification a 3072-bit exponentiation (8.9 ms of the CA's
    event loop against 0.11 ms with 65537): a cheap request, from anyone, that cost the
    CA 80 times another. The CA's key rule refuses that exponent for every purpose,
    now before the signature is looked at."""
    n = rsa.generate_private_key(65537, 3072).public_key().public_numbers().n
    jwk = {
        "kty": "RSA",
        "n": jose.b64e(n.to_bytes(384, "big")),
        "e": jose.b64e(((n - 2) | 1).to_bytes(384, "big")),
    }
    url = f"{flow.acme.base}/acme/{resource}"
    header = {"alg": "RS256", "jwk": jwk, "nonce": await flow.acme.nonce(), "url": url}
    p64 = jose.b64e(json.dumps(header).encode())
    b64 = jose.b64e(b'{"termsOfServiceAgreed": true, "certificate": "AA"}')
    doc = {"protected": p64, "payload": b64, "signature": jose.b64e(b"\x01" * 384)}
    resp = await flow.acme.request("POST", url, json.dumps(doc).encode(), JOSE)
    assert (resp.status, resp.problem_type) == (400, "badPublicKey"), resp.body
    assert "exponent" in resp.json()["detail"]


@pytest.mark.parametrize(
    "tail",
    [
        "\r\nBcc: victim@outside.test",
        "\n",
        "\t",
        "\x00",
        "\x7f",
        "\u009b31m",  # a C1 control: a terminal's control sequence introducer
        "\u2028",  # a line separator
        "\u200b",  # zero width
        "\u202e",  # a right-to-left override
        "x" * 240,  # an address over RFC 5321's 254 octets
    ],
)
async def test_a_contact_with_control_characters_is_an_invalid_contact(
    flow: Flow, tail: str
) -> None:
    """RFC 8555 §7.3: a contact the CA cannot use is invalidContact; a URI has no control
    characters (RFC 3986 §2), and one with CR LF would be a mail header to whoever reads
    the contacts."""
    contact = [f"mailto:admin@outside.test{tail}"]
    resp = await flow.acme.post(flow.kid, {"contact": contact}, flow.key, flow.kid)
    assert (resp.status, resp.problem_type) == (400, "invalidContact"), resp.body
    fresh = Flow(flow.acme, flow.responder)
    created = await fresh.account(contact=contact)
    assert (created.status, created.problem_type) == (400, "invalidContact"), created.body


@pytest.mark.parametrize("where", ["kid", "eab kid", "contact"])
async def test_an_unpaired_surrogate_is_malformed(flow: Flow, where: str) -> None:
    """RFC 8259 §8.2, RFC 7493 §2.1: a \\ud800 escape with no pair is not text. Python's
    parser keeps it, and the database driver cannot encode it: a kid or an EAB kid
    holding one answered 500 (the account, or the EAB key, looked up by it)."""
    base = flow.acme.base
    lone = "\\ud800"
    if where == "kid":
        url = f"{base}/acme/new-order"
        header = (
            f'{{"alg": "ES256", "kid": "{flow.kid}{lone}", '
            f'"nonce": "{await flow.acme.nonce()}", "url": "{url}"}}'
        )
        payload = b'{"identifiers": [{"type": "dns", "value": "s.outside.test"}]}'
        key = flow.key
    elif where == "eab kid":
        url = f"{base}/acme/new-account"
        key = rsa.generate_private_key(65537, 2048)
        eab_header = f'{{"alg": "HS256", "kid": "{lone}", "url": "{url}"}}'
        eab = {
            "protected": jose.b64e(eab_header.encode()),
            "payload": jose.b64e(json.dumps(jose.jwk_from_key(key)).encode()),
            "signature": jose.b64e(bytes(32)),
        }
        nonce = await flow.acme.nonce()
        header = json.dumps(
            {"alg": "RS256", "jwk": jose.jwk_from_key(key), "nonce": nonce, "url": url}
        )
        payload = json.dumps({"termsOfServiceAgreed": True, "externalAccountBinding": eab}).encode()
    else:
        url = flow.kid
        header = json.dumps(
            {"alg": "ES256", "kid": flow.kid, "nonce": await flow.acme.nonce(), "url": url}
        )
        payload = b'{"contact": ["mailto:a' + lone.encode() + b'@outside.test"]}'
        key = flow.key
    p64, b64 = jose.b64e(header.encode()), jose.b64e(payload)
    alg = "RS256" if where == "eab kid" else "ES256"
    sig = jose.raw_sign(key, alg, f"{p64}.{b64}".encode())
    doc = {"protected": p64, "payload": b64, "signature": jose.b64e(sig)}
    resp = await flow.acme.request("POST", url, json.dumps(doc).encode(), JOSE)
    assert (resp.status, resp.problem_type) == (400, "malformed"), resp.body
    assert "surrogate" in resp.json()["detail"]

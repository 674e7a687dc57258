"""What an order may ask for and a finalize may carry, as the CA's settings say: names the
CA refuses (public suffixes, special-use names, invalid A-labels, reserved addresses), the
configured RSA bounds for certificate keys, and the ceiling on pending authorizations."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from acmekit.protocol import jose
from acmekit.server.config import KeySettings, ServerConfig
from acmekit_testkit.acme_raw import Flow

PENDING_CAP = 3


@pytest.fixture
def ca_config(ca_config: ServerConfig) -> ServerConfig:
    limits = replace(ca_config.rate_limits, pending_authorizations_per_account=PENDING_CAP)
    keys = KeySettings(rsa_min_bits=2048, rsa_max_bits=8192)
    return replace(ca_config, rate_limits=limits, keys=keys)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("co.uk", "public suffix 'co.uk'"),
        ("*.co.uk", "wildcard on the public suffix 'co.uk'"),
        ("foo.localhost", "'localhost' is a special-use domain name"),
        ("printer.local", "'local' is a special-use domain name"),
        ("xn--zz.names.test", "'xn--zz' is not a valid IDNA 2008 A-label"),
        ("10.0.0.1", "10.0.0.1 is a reserved address (10.0.0.0/8"),
        ("169.254.169.254", "169.254.169.254 is a reserved address"),
    ],
)
async def test_refused_identifiers(flow: Flow, name: str, words: str) -> None:
    await flow.account()
    resp = await flow.order(name, profile="shortlived")
    assert (resp.status, resp.problem_type) == (400, "rejectedIdentifier")
    assert words in resp.json()["detail"]


async def test_a_certificate_key_as_large_as_the_setting_allows(flow: Flow) -> None:
    """[keys] rsa_max_bits = 8192: a 4608-bit CSR key is issued for, as account keys are."""
    name = "big-key.names.test"
    await flow.account()
    resp = await flow.order(name)
    await flow.solve(resp.json())
    key = rsa.generate_private_key(public_exponent=65537, key_size=4608)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    order = (await flow.get(resp.header("location") or "")).json()
    done = await flow.acme.post(order["finalize"], {"csr": jose.b64e(csr)}, flow.key, flow.kid)
    assert done.status == 200, done.body
    assert done.json()["status"] in ("valid", "processing")


async def test_pending_authorizations_have_a_ceiling(flow: Flow) -> None:
    await flow.account()
    first = await flow.order(*(f"p{i}.names.test" for i in range(PENDING_CAP)))
    assert first.status == 201, first.body
    same = await flow.order("p0.names.test")
    assert same.status == 201, same.body  # reuses a pending authorization: none new
    over = await flow.order("one-more.names.test")
    assert (over.status, over.problem_type) == (429, "rateLimited")
    assert f"over the limit of {PENDING_CAP}" in over.json()["detail"]
    assert int(over.header("retry-after") or 0) > 0
    await flow.solve(first.json())  # validated authorizations are no longer pending
    again = await flow.order("one-more.names.test")
    assert again.status == 201, again.body

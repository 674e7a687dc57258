"""ACME Renewal Information (RFC 9773) in-process: directory, windows, revocation,
an operator moving a window, and malformed or unknown certIDs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from acmekit.protocol import jose
from acmekit.server.admin import move_ari_window
from acmekit.server.ari import cert_id_of
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Flow, RawAcme


def parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


async def _issued(flow: Flow, name: str) -> x509.Certificate:
    _, order = await flow.issue(name)
    return x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)[0]


async def test_renewal_info_window_and_retry_after(flow: Flow, acme: RawAcme) -> None:
    directory = await acme.directory()
    assert directory["renewalInfo"] == "https://ca.test/acme/renewal-info"
    leaf = await _issued(flow, "ari.test")
    resp = await acme.request("GET", f"{directory['renewalInfo']}/{cert_id_of(leaf)}")
    assert resp.status == 200, resp.body
    assert resp.header("retry-after") == "21600"
    window = resp.json()["suggestedWindow"]
    start, end = parse(window["start"]), parse(window["end"])
    nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    two_thirds = nb + (na - nb) * 2 / 3
    assert abs((start - (two_thirds - timedelta(days=1))).total_seconds()) <= 1
    assert abs((end - (two_thirds + timedelta(days=1))).total_seconds()) <= 1


async def test_revoked_certificate_window_is_in_the_past(flow: Flow, acme: RawAcme) -> None:
    leaf = await _issued(flow, "revoked.ari.test")
    body = {"certificate": jose.b64e(leaf.public_bytes(Encoding.DER)), "reason": 4}
    revoked = await acme.post(f"{acme.base}/acme/revoke-cert", body, flow.key, flow.kid)
    assert revoked.status == 200, revoked.body
    resp = await acme.request("GET", f"{acme.base}/acme/renewal-info/{cert_id_of(leaf)}")
    window = resp.json()["suggestedWindow"]
    now = datetime.now(UTC)
    assert parse(window["start"]) < parse(window["end"]) <= now


async def test_operator_moves_a_window(flow: Flow, acme: RawAcme, ca: Assembly) -> None:
    leaf = await _issued(flow, "moved.ari.test")
    to = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    move_ari_window(ca.store, format(leaf.serial_number, "X"), to)
    resp = await acme.request("GET", f"{acme.base}/acme/renewal-info/{cert_id_of(leaf)}")
    window = resp.json()["suggestedWindow"]
    assert window["start"] == "2030-05-06T07:08:09Z"
    assert parse(window["end"]) > to


async def test_unknown_and_malformed_cert_ids(flow: Flow, acme: RawAcme) -> None:
    leaf = await _issued(flow, "known.ari.test")
    key_id = str(cert_id_of(leaf)).split(".")[0]
    base = f"{acme.base}/acme/renewal-info"
    unknown = await acme.request("GET", f"{base}/{key_id}.AQ")
    assert unknown.status == 404 and unknown.problem_type == "malformed"
    other_issuer = await acme.request("GET", f"{base}/aYhba4dGQEHhs3uEe6CuLN4ByMg.AIdlQyE")
    assert other_issuer.status == 404
    for bad in ("nodot", f"{key_id}.gA", f"{key_id}.AAE"):
        resp = await acme.request("GET", f"{base}/{bad}")
        assert resp.status == 400 and resp.problem_type == "malformed", bad
    post = await acme.request("POST", f"{base}/{key_id}.AQ")
    assert post.status == 405
    assert post.header("allow") == "GET, HEAD"  # RFC 9110 §9.1: HEAD wherever GET is


async def test_head_answers_as_get_without_the_content(flow: Flow, acme: RawAcme) -> None:
    """RFC 9110 §9.3.2: the status and headers GET would have, Content-Length too."""
    leaf = await _issued(flow, "head.ari.test")
    url = f"{acme.base}/acme/renewal-info/{cert_id_of(leaf)}"
    get, head = await acme.request("GET", url), await acme.request("HEAD", url)
    assert (head.status, head.body) == (200, b"")
    assert head.header("content-length") == str(len(get.body))
    assert head.header("retry-after") == get.header("retry-after")
    assert head.header("content-type") == "application/json"

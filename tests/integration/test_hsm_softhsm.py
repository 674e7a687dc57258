"""The intermediate's key in a PKCS#11 token (SoftHSM2): `acmekit server keys` makes the
hierarchy, a real `acmekit server` process signs certificates and CRLs through the token,
and a token taken away mid-run costs clients a 503 with Retry-After, never an order.

The token is the test's own (acmekit_testkit.softhsm); taking it away moves its directory
out of SoftHSM2's tokendir, which the module notices at the next use of a handle."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pkcs11
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from acmekit.database import create_engine
from acmekit.protocol import jose
from acmekit.server.hsm import HsmError, Pkcs11Key, TokenAddress
from acmekit.server.schema import certificates, orders
from acmekit.server.signing import SignerUnavailable
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme, Resp
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.crls import crl_url, fetch_listing
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.outages import is_try_again
from acmekit_testkit.ports import free_port
from acmekit_testkit.softhsm import SoftHsm, softhsm_token

PATIENCE = 60.0  # seconds a step may wait for the CA before the test fails


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    hsm = softhsm_token(tmp_path / "hsm")
    # Every process this test starts (and this one's own look at the token) sees it.
    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))
    return hsm


def make_keys(hsm: SoftHsm, work: Path, *extra: str) -> tuple[Path, dict[str, Any]]:
    """`acmekit server keys` into work/ca-state; (state dir, the [hsm] table written)."""
    state, config = work / "ca-state", work / "ca.toml"
    config.write_text("# the CA of this test\nvalidation_timeout = 5\n")
    done = subprocess.run(
        hsm.keys_argv(state, config, *extra), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return state, tomllib.loads(config.read_text())["hsm"]


def token_session(hsm: SoftHsm) -> Any:
    lib = pkcs11.lib(hsm.module)
    lib.reinitialize()  # this process may have seen another test's token before
    return lib.get_token(token_label=hsm.label).open(user_pin=hsm.pin)


def test_keys_makes_the_intermediate_in_the_token(tmp_path: Path, token: SoftHsm) -> None:
    state, table = make_keys(token, tmp_path, "--key-type", "rsa2048")
    root = x509.load_pem_x509_certificate((state / "root.pem").read_bytes())
    intermediate = x509.load_pem_x509_certificate((state / "intermediate.pem").read_bytes())
    intermediate.verify_directly_issued_by(root)
    assert isinstance(intermediate.public_key(), rsa.RSAPublicKey)
    assert (state / "root.key").stat().st_mode & 0o777 == 0o600
    assert not (state / "intermediate.key").exists()
    text = (tmp_path / "ca.toml").read_text()
    assert text.startswith("# the CA of this test\n")  # the operator's file is kept
    assert table == {
        "module": token.module,
        "token_label": token.label,
        "key_label": "acmekit-intermediate",
        "pin_file": str(token.pin_file),
    }
    assert token.pin not in text

    session = token_session(token)
    try:
        key = session.get_key(
            object_class=pkcs11.ObjectClass.PRIVATE_KEY, label="acmekit-intermediate"
        )
        assert key[pkcs11.Attribute.SENSITIVE] and not key[pkcs11.Attribute.EXTRACTABLE]
        assert key[pkcs11.Attribute.NEVER_EXTRACTABLE] and key[pkcs11.Attribute.ALWAYS_SENSITIVE]
        with pytest.raises(pkcs11.AttributeSensitive):
            key[pkcs11.Attribute.PRIVATE_EXPONENT]  # the token will not show the key
        modulus = key[pkcs11.Attribute.MODULUS]
    finally:
        session.close()
    public = intermediate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert int.from_bytes(modulus, "big") == public.public_numbers().n

    # Nothing is made over what exists: the state, the [hsm] table, the key's label.
    for argv, why in (
        (token.keys_argv(state, tmp_path / "new.toml"), "already has an intermediate"),
        (token.keys_argv(tmp_path / "new", tmp_path / "ca.toml"), "has an [hsm] table already"),
        (token.keys_argv(tmp_path / "new", tmp_path / "new.toml"), "already holds objects"),
    ):
        again = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and why in again.stderr, again.stderr


def test_keys_leaves_the_root_key_offline_and_reuses_it(tmp_path: Path, token: SoftHsm) -> None:
    offline = tmp_path / "offline" / "root.key"
    state, _ = make_keys(token, tmp_path, "--root-key", str(offline))
    assert offline.stat().st_mode & 0o777 == 0o600
    assert not (state / "root.key").exists()
    # A second intermediate (a rotation) in another state directory, under the same root.
    other = tmp_path / "rotated"
    other.mkdir()
    (other / "root.pem").write_bytes((state / "root.pem").read_bytes())
    argv = token.keys_argv(
        other, tmp_path / "rotated.toml", "--root-key", str(offline), "--key-label", "second"
    )
    at = argv.index("--pin-file")
    argv[at : at + 2] = ["--pin-env", "ROTATION_PIN"]  # the PIN from the environment
    env = {**token.env, "ROTATION_PIN": token.pin}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert "(existing)" in done.stdout
    table = tomllib.loads((tmp_path / "rotated.toml").read_text())["hsm"]
    assert table["pin_env"] == "ROTATION_PIN" and "pin_file" not in table
    root = x509.load_pem_x509_certificate((state / "root.pem").read_bytes())
    second = x509.load_pem_x509_certificate((other / "intermediate.pem").read_bytes())
    second.verify_directly_issued_by(root)
    assert isinstance(second.public_key(), ec.EllipticCurvePublicKey)


def _start(state: Path, table: dict[str, Any], work: Path) -> subprocess.CompletedProcess[str]:
    """`acmekit server` that must stop at start; its outcome."""
    config = work / f"start-{time.monotonic_ns()}.toml"
    body = "\n".join(f'{k} = "{v}"' for k, v in table.items())
    config.write_text(f"[hsm]\n{body}\n")
    argv = [
        sys.executable, "-m", "acmekit", "server", "--state-dir", str(state),
        "--config", str(config), "--listen", f"127.0.0.1:{free_port()}", "--crl-listen", "",
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_a_wrong_pin_or_a_missing_token_stops_the_start_saying_so(
    tmp_path: Path, token: SoftHsm
) -> None:
    state, table = make_keys(token, tmp_path)
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("9999\n")
    refused = _start(state, {**table, "pin_file": str(wrong)}, tmp_path)
    assert refused.returncode == 1
    assert f"token {token.label!r} refused the PIN" in refused.stderr
    no_key = _start(state, {**table, "key_label": "nothing"}, tmp_path)
    assert "no private key labelled 'nothing'" in no_key.stderr
    with token.removed():
        absent = _start(state, table, tmp_path)
    assert absent.returncode == 1
    assert f"no token labelled {token.label!r}" in absent.stderr
    unmade = _start(tmp_path / "no-keys-made", table, tmp_path)
    assert "root.pem is missing (run `acmekit server keys` first)" in unmade.stderr
    for done in (refused, no_key, absent, unmade):
        assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------
# Issuing through the token, and through its absence


async def _until_answered(send: Any) -> Resp:
    deadline = time.monotonic() + PATIENCE
    while True:
        resp: Resp = await send()
        if not is_try_again(resp) or time.monotonic() > deadline:
            return resp
        await asyncio.sleep(float(resp.header("retry-after") or 1))


async def _poll(flow: Flow, url: str, waiting: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + PATIENCE
    while True:
        doc: dict[str, Any] = (await flow.get(url)).json()
        if doc["status"] not in waiting or time.monotonic() > deadline:
            return doc
        await asyncio.sleep(0.1)


async def _ready_order(flow: Flow, name: str) -> tuple[str, dict[str, Any]]:
    created = await flow.order(name)
    assert created.status == 201, created.body
    await flow.solve(created.json())
    url = created.header("location") or ""
    order = (await flow.get(url)).json()
    assert order["status"] == "ready", order
    return url, order


async def _finalize(flow: Flow, order: dict[str, Any], name: str) -> Resp:
    _, csr = make_csr(name)
    return await flow.acme.post(order["finalize"], {"csr": jose.b64e(csr)}, flow.key, flow.kid)


async def _chain(flow: Flow, order: dict[str, Any]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)


async def test_issuance_crls_and_a_token_taken_away_mid_run(
    tmp_path: Path, token: SoftHsm, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    state, table = make_keys(token, tmp_path)
    intermediate = x509.load_pem_x509_certificate((state / "intermediate.pem").read_bytes())
    public = intermediate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    settings: dict[str, Any] = {
        "hsm": table,
        "crl": {"listen": f"127.0.0.1:{free_port()}"},
        # An issuance cut by the token's absence is taken up again a second later, and
        # each signature waits 1.5 s, so the token can be taken away under one.
        "stale_after": 1.0,
        "finalize_wait": 0.2,
        "issuance_delay": 1.5,
    }
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, state_dir=state,
        settings=settings, verbose=False,
    ) as ca:  # fmt: skip
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        flow = Flow(acme, responder)
        try:
            await flow.account()

            # 1. An ordinary issuance, signed in the token.
            url, order = await _ready_order(flow, "one.hsm.test")
            assert (await _finalize(flow, order, "one.hsm.test")).status == 200
            done = await _poll(flow, url, ("processing",))
            assert done["status"] == "valid", done
            first = await _chain(flow, done)

            # 2. Revoked: the CRL that lists it is signed in the token.
            body = {"certificate": jose.b64e(first[0].public_bytes(Encoding.DER)), "reason": 4}
            revoked = await acme.post(f"{acme.base}/acme/revoke-cert", body, flow.key, flow.kid)
            assert revoked.status == 200, revoked.body
            crl = x509.load_der_x509_crl(
                await fetch_listing(crl_url(first[0]), first[0].serial_number)
            )

            # 3. The token is away when a finalize comes: 503 + Retry-After, still ready.
            url2, order2 = await _ready_order(flow, "two.hsm.test")
            with token.removed():
                refused = await _finalize(flow, order2, "two.hsm.test")
                still = (await flow.get(url2)).json()
            assert is_try_again(refused), (refused.status, refused.body)
            assert refused.problem_type == "serverInternal"
            assert "signing key is unavailable" in refused.json()["detail"]
            assert still["status"] == "ready", still
            # Back: the client does as Retry-After says, and the order is finalized.
            again = await _until_answered(lambda: _finalize(flow, order2, "two.hsm.test"))
            assert again.status == 200, again.body
            done2 = await _poll(flow, url2, ("processing",))
            assert done2["status"] == "valid", done2
            second = await _chain(flow, done2)

            # 4. The token goes while a signature is under way: the order waits,
            # processing (not invalid), well past the recovery interval, and is issued
            # once the token is back.
            url3, order3 = await _ready_order(flow, "three.hsm.test")
            started = await _finalize(flow, order3, "three.hsm.test")
            assert started.status == 200 and started.json()["status"] == "processing"
            with token.removed():  # before the held-back signature is made
                await asyncio.sleep(4.0)  # the signature failed; recovery found no token
                waiting = (await flow.get(url3)).json()
            assert waiting["status"] == "processing", waiting
            done3 = await _poll(flow, url3, ("processing",))
            assert done3["status"] == "valid", done3
            third = await _chain(flow, done3)
        finally:
            await acme.close()
        log = ca.log.read_text()

    root = x509.load_pem_x509_certificate(ca.root_path.read_bytes())
    for chain in (first, second, third):
        chain[0].verify_directly_issued_by(chain[1])
        chain[1].verify_directly_issued_by(root)
        assert chain[1] == intermediate
    assert crl.is_signature_valid(public)
    assert crl.get_revoked_certificate_by_serial_number(first[0].serial_number) is not None
    assert "Traceback" not in log
    assert "lost token" in log and "is back" in log
    assert "issuance left for recovery, signing key unavailable" in log  # step 4's signature
    assert "resumed issuance of order" in log

    # Nothing lost, nothing doubled: each order has exactly its one certificate.
    engine = create_engine(f"sqlite:///{state / 'acmekit.db'}")
    with engine.begin() as conn:
        order_rows = list(conn.execute(sa.select(orders)))
        issued = [c for c in conn.execute(sa.select(certificates)) if c.pem is not None]
    engine.dispose()
    assert len(order_rows) == 3 and len(issued) == 3
    assert {o.certificate_id for o in order_rows} == {c.id for c in issued}
    assert len({c.serial for c in issued}) == 3


def test_the_signer_reports_a_removed_token_and_uses_it_again_once_back(
    tmp_path: Path, token: SoftHsm
) -> None:
    """In this process: the key is a handle (no key material in Python), a removed token
    is SignerUnavailable for sign and check, and the same object signs once it is back."""
    state, _ = make_keys(token, tmp_path)
    token_session(token).close()  # the module of this process now reads this test's token
    intermediate = x509.load_pem_x509_certificate((state / "intermediate.pem").read_bytes())
    public = intermediate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    where = TokenAddress(token.module, token.label, "acmekit-intermediate")
    key = Pkcs11Key(where, token.pin, public, retry_interval=0.0)
    key.connect()
    try:
        assert not any(isinstance(v, ec.EllipticCurvePrivateKey) for v in vars(key).values())
        public.verify(key.sign(b"tbs"), b"tbs", ec.ECDSA(hashes.SHA256()))
        with token.removed():
            with pytest.raises(SignerUnavailable, match="no token labelled"):
                key.sign(b"tbs")
            with pytest.raises(SignerUnavailable, match="not available"):
                key.check()
        key.check()
        public.verify(key.sign(b"again"), b"again", ec.ECDSA(hashes.SHA256()))
    finally:
        key.close()
    with pytest.raises(HsmError, match="refused the PIN"):
        Pkcs11Key(where, "0000", public).connect()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(HsmError, match="is not the key of the intermediate"):
        Pkcs11Key(where, token.pin, other).connect()


def test_our_client_gets_a_certificate_signed_by_an_rsa_key_in_the_token(
    tmp_path: Path, token: SoftHsm, dns: DnsServerHandle
) -> None:
    """`acmekit certonly --standalone` against the CA whose intermediate's key (RSA) is
    in the token; `openssl verify` accepts the chain it saved."""
    state, table = make_keys(token, tmp_path, "--key-type", "rsa2048")
    http01 = free_port()
    settings = {"hsm": table, "crl": {"listen": f"127.0.0.1:{free_port()}"}}
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=http01, state_dir=state,
        settings=settings, verbose=False,
    ) as ca:  # fmt: skip
        done = run_acmekit(
            ca.root_path, "certonly", "-n", "--agree-tos", "-m", "ops@hsm.test",
            "--server", ca.directory_url, *certbot_dirs(tmp_path / "client"),
            "--standalone", "--http-01-port", str(http01), "--http-01-address", "127.0.0.1",
            "-d", "rsa.hsm.test",
        )  # fmt: skip
        log = ca.log.read_text()
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    live = tmp_path / "client" / "etc" / "live" / "rsa.hsm.test"
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert chain[1] == x509.load_pem_x509_certificate((state / "intermediate.pem").read_bytes())
    assert chain[1].signature_algorithm_oid._name == "ecdsa-with-SHA384"  # by the root
    assert chain[0].signature_algorithm_oid._name == "sha256WithRSAEncryption"  # by the token
    checked = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca.root_path), "-untrusted",
         str(live / "chain.pem"), str(live / "cert.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0 and ": OK" in checked.stdout, checked.stdout + checked.stderr
    assert "Traceback" not in log

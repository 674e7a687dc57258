"""`acmekit server certs revoke` beside a running CA process: the revocation is on the CRL
the CA's own listener serves the moment the command returns, signed with the CA's key (a
file key, or the intermediate's key in a PKCS#11 token), and in the CA's ARI answer."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.server.ari import cert_id_of
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.crls import crl_url, fetch
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port
from acmekit_testkit.softhsm import SoftHsm, softhsm_token


def acmekit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acmekit", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


async def _revoke_beside_the_ca(
    tmp_path: Path,
    dns: DnsServerHandle,
    responder: Http01Responder,
    state: Path,
    settings: dict[str, Any],
    operator_args: list[str],
) -> tuple[x509.Certificate, x509.CertificateRevocationList]:
    """Issue a certificate from a CA process, revoke it from the command line, and read
    the CRL and the ARI window the CA serves then: (the certificate, that CRL)."""
    settings = {**settings, "crl": {"listen": f"127.0.0.1:{free_port()}"}}
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, state_dir=state,
        settings=settings, verbose=False,
    ) as server:  # fmt: skip
        acme = HttpRawAcme(server.base_url, str(server.root_path))
        try:
            flow = Flow(acme, responder)
            _, order = await flow.issue("revoked.operator-cli.test")
            leaf = x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)[0]
            serial = format(leaf.serial_number, "x")
            before = x509.load_der_x509_crl(await fetch(crl_url(leaf)))
            assert before.get_revoked_certificate_by_serial_number(leaf.serial_number) is None
            revoked = acmekit(
                "server", "certs", "revoke", serial, "--reason", "cessationOfOperation",
                "--state-dir", str(state), *operator_args,
            )  # fmt: skip
            assert revoked.returncode == 0, revoked.stderr
            assert revoked.stderr == "" and "crl: shard" in revoked.stdout
            crl = x509.load_der_x509_crl(await fetch(crl_url(leaf)))
            info_url = f"{(await acme.directory())['renewalInfo']}/{cert_id_of(leaf)}"
            window = (await acme.request("GET", info_url)).json()["suggestedWindow"]
        finally:
            await acme.close()
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.cessation_of_operation
    assert window["end"] < leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    shown = acmekit("server", "certs", "show", serial, "--state-dir", str(state), *operator_args)
    assert "status: revoked:cessationOfOperation" in shown.stdout.splitlines()
    return leaf, crl


async def test_revoked_from_the_command_line_onto_the_served_crl(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    state = tmp_path / "ca-state"
    _, crl = await _revoke_beside_the_ca(tmp_path, dns, responder, state, {}, [])
    intermediate = x509.load_pem_x509_certificate((state / "intermediate.pem").read_bytes())
    public = intermediate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(public)


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    hsm = softhsm_token(tmp_path / "hsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))  # for the processes started here
    return hsm


def _make_keys(token: SoftHsm, state: Path, config: Path) -> dict[str, Any]:
    """`acmekit server keys`: the hierarchy in `state`, the [hsm] table in `config`."""
    made = subprocess.run(
        token.keys_argv(state, config), capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stderr
    assert not (state / "intermediate.key").exists()
    return dict(tomllib.loads(config.read_text())["hsm"])


async def test_revoked_from_the_command_line_with_the_key_in_a_token(
    tmp_path: Path, token: SoftHsm, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    state, config = tmp_path / "ca-state", tmp_path / "operator.toml"
    table = _make_keys(token, state, config)
    _, crl = await _revoke_beside_the_ca(
        tmp_path, dns, responder, state, {"hsm": table}, ["--config", str(config)]
    )
    intermediate = x509.load_pem_x509_certificate((state / "intermediate.pem").read_bytes())
    public = intermediate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(public)  # signed in the token, from the command line

"""The operator's commands over a CA that issued real certificates (on SQLite and on
PostgreSQL): `acmekit server certs list / show / revoke`, `accounts list / show /
deactivate` and `orders list`. A revocation made from the command line is on the CRL
the CA serves and in its ARI answer, keyCompromise blocks the key for later orders, and
a deactivated account's next request is refused."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.cli.main import cli
from acmekit.protocol import csr, jose
from acmekit.protocol.messages import AuthorizationStatus
from acmekit.server.ari import cert_id_of
from acmekit.server.config import ServerConfig
from acmekit.server.crl import CrlApp
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme, new_key
from acmekit_testkit.csr import make_csr
from acmekit_testkit.pendingorders import stored_account

# The CA's CRLs under a URL of their own, as a CA whose listener is given on its command
# line: the command line's CRL names the URL the CA's own CRLs name.
CRL_BASE = "http://crl.operator.test:8080"


@pytest.fixture
def ca_config(ca_config: ServerConfig) -> ServerConfig:
    return replace(ca_config, crl=replace(ca_config.crl, base_url=CRL_BASE))


def _run(config: ServerConfig, *args: str) -> tuple[int, str, str]:
    """`acmekit server ARGS` on the CA's database: (exit code, stdout, stderr)."""
    argv = ["server", *args, "--state-dir", str(config.state_dir), "--db", str(config.db)]
    result = CliRunner().invoke(cli, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash, not an error the command reports
    return result.exit_code, result.stdout, result.stderr


def _ok(config: ServerConfig, *args: str) -> str:
    """`acmekit server ARGS`, which must succeed: its standard output."""
    code, out, err = _run(config, *args)
    assert code == 0, (args, err)
    return out


async def _issue(flow: Flow, name: str) -> tuple[Any, x509.Certificate, str]:
    """An order for `name` finalized with a key of our own: (that key, the leaf, the
    order's URL)."""
    if not flow.kid:
        await flow.account()
    resp = await flow.order(name)
    assert resp.status == 201, resp.body
    await flow.solve(resp.json())
    order_url = resp.header("location") or ""
    order = (await flow.get(order_url)).json()
    key, der = make_csr(name)
    fin = await flow.acme.post(order["finalize"], {"csr": jose.b64e(der)}, flow.key, flow.kid)
    assert fin.status == 200, fin.body
    pem = (await flow.get(fin.json()["certificate"])).body
    return key, x509.load_pem_x509_certificates(pem)[0], order_url


async def _served_crl(
    ca: Assembly, config: ServerConfig, serial: int
) -> x509.CertificateRevocationList:
    assert ca.crl is not None
    shard = serial % config.crl.shards
    status, _, body = await CrlApp(ca.crl)._answer("GET", f"/crl/{shard}.crl")
    assert status == 200
    return x509.load_der_x509_crl(body)


async def test_certificates_listed_shown_and_revoked_onto_the_crl(
    ca: Assembly, ca_config: ServerConfig, acme: RawAcme, flow: Flow, responder: Http01Responder
) -> None:
    _, first, _ = await _issue(flow, "one.operator.test")
    _, second, _ = await _issue(flow, "two.operator.test")
    other = Flow(acme, responder, key=new_key())
    _, third, _ = await _issue(other, "three.operator.test")
    serials = [format(c.serial_number, "x") for c in (first, second, third)]
    account = flow.kid.rsplit("/", 1)[1]
    crl_before = await _served_crl(ca, ca_config, first.serial_number)
    assert crl_before.get_revoked_certificate_by_serial_number(first.serial_number) is None

    out = _ok(ca_config, "certs", "list")
    lines = [line.split("\t") for line in out.splitlines()]
    assert [fields[0] for fields in lines] == serials[::-1]  # newest first
    assert lines[-1] == [
        serials[0],
        first.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "valid",
        account,
        "one.operator.test",
    ]
    out = _ok(ca_config, "certs", "list", "--name", "two.operator.test")
    assert [line.split("\t")[0] for line in out.splitlines()] == [serials[1]]
    out = _ok(ca_config, "certs", "list", "--account", account, "--limit", "1")
    assert [line.split("\t")[0] for line in out.splitlines()] == [serials[1]]
    out = _ok(ca_config, "certs", "list", "--expiring-within", "1d")
    assert out == ""  # the default profile's certificates live 90 days
    out = _ok(ca_config, "certs", "list", "--expiring-within", "91d")
    assert len(out.splitlines()) == 3

    # Colons and upper case, as a certificate viewer prints a serial.
    spelled = ":".join(f"{b:02X}" for b in first.serial_number.to_bytes(20, "big").lstrip(b"\0"))
    code, out, err = _run(ca_config, "certs", "revoke", spelled, "--reason", "privilegeWithdrawn")
    assert code == 0, err
    assert f"revoked: {serials[0]} (privilegeWithdrawn)" in out

    # On the CRL the CA serves, with its reason; ARI says to renew at once.
    crl_after = await _served_crl(ca, ca_config, first.serial_number)
    entry = crl_after.get_revoked_certificate_by_serial_number(first.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.privilege_withdrawn
    assert crl_after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == (
        crl_before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    )
    idp = crl_after.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    shard = first.serial_number % ca_config.crl.shards
    assert [n.value for n in idp.full_name or ()] == [f"{CRL_BASE}/crl/{shard}.crl"]
    directory = await acme.directory()
    info = await acme.request("GET", f"{directory['renewalInfo']}/{cert_id_of(first)}")
    window = info.json()["suggestedWindow"]
    revoked_at = ca.store.certificates.certificate_by_serial(serials[0])
    assert revoked_at is not None and revoked_at.revoked_at is not None
    assert window["end"] <= revoked_at.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    out = _ok(ca_config, "certs", "show", serials[0], "--pem")
    shown = dict(line.split(": ", 1) for line in out.split("-----BEGIN")[0].splitlines())
    assert shown["status"] == "revoked:privilegeWithdrawn"
    assert shown["reason"] == "privilegeWithdrawn" and shown["revoked"] != "-"
    assert shown["account"] == account and shown["order"] != "-"
    assert shown["key blocked"] == "no"
    assert first.public_bytes(serialization.Encoding.PEM).decode() in out

    out = _ok(ca_config, "certs", "list", "--json", "--revoked")
    listed = json.loads(out)
    assert [c["serial"] for c in listed] == [serials[0]]
    assert listed[0]["status"] == "revoked:privilegeWithdrawn"
    assert sorted(listed[0]) == [
        "account_id", "issued", "names", "not_after", "not_before", "order_id",
        "revocation_reason", "revoked_at", "serial", "status",
    ]  # fmt: skip
    out = _ok(ca_config, "certs", "list", "--unrevoked")
    assert [line.split("\t")[0] for line in out.splitlines()] == serials[:0:-1]

    code, out, err = _run(ca_config, "certs", "revoke", serials[0], "--reason", "superseded")
    assert code == 1 and "already revoked" in err and "privilegeWithdrawn" in err
    code, out, err = _run(ca_config, "certs", "revoke", "abcdef", "--reason", "superseded")
    assert code == 1 and err.strip() == "Error: no certificate with serial abcdef"
    code, _, err = _run(ca_config, "certs", "show", "abcdef")
    assert code == 1 and "no certificate with serial abcdef" in err


async def test_key_compromise_from_the_command_line_blocks_the_key(
    ca_config: ServerConfig, acme: RawAcme, flow: Flow
) -> None:
    key, leaf, _ = await _issue(flow, "compromised.operator.test")
    serial = format(leaf.serial_number, "x")
    code, out, err = _run(ca_config, "certs", "revoke", serial, "--reason", "keyCompromise")
    assert code == 0, err
    assert "key blocked" in out
    out = _ok(ca_config, "certs", "show", serial)
    assert "key blocked: yes" in out.splitlines()

    again = await flow.order("compromised.operator.test")
    await flow.solve(again.json())
    order = (await flow.get(again.header("location") or "")).json()
    reuse = csr.make_csr(key, ["compromised.operator.test"])
    refused = await acme.post(order["finalize"], {"csr": jose.b64e(reuse)}, flow.key, flow.kid)
    assert (refused.status, refused.problem_type) == (400, "badPublicKey")
    assert "blocked" in refused.json()["detail"]


async def test_accounts_and_orders_listed_and_an_account_deactivated(
    ca: Assembly, ca_config: ServerConfig, acme: RawAcme, flow: Flow, responder: Http01Responder
) -> None:
    await flow.account(contact=["mailto:ops@operator.test"])
    other = Flow(acme, responder, key=new_key())
    await other.account(contact=["mailto:someone@else.test"])
    _, leaf, issued_url = await _issue(flow, "kept.operator.test")
    pending = await flow.order("pending.operator.test")
    assert pending.status == 201
    pending_url = pending.header("location") or ""
    authz_id = pending.json()["authorizations"][0].rsplit("/", 1)[1]
    account = flow.kid.rsplit("/", 1)[1]

    out = _ok(ca_config, "accounts", "list")
    listed = [line.split("\t") for line in out.splitlines()]
    assert [fields[0] for fields in listed] == [other.kid.rsplit("/", 1)[1], account]
    assert listed[1][1:2] == ["valid"] and listed[1][3] == "mailto:ops@operator.test"
    out = _ok(ca_config, "accounts", "list", "--contact", "OPS@operator")
    assert [line.split("\t")[0] for line in out.splitlines()] == [account]

    out = _ok(ca_config, "orders", "list", "--account", account)
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(r[0], r[1], r[4]) for r in rows] == [
        (pending_url.rsplit("/", 1)[1], "pending", "pending.operator.test"),
        (issued_url.rsplit("/", 1)[1], "valid", "kept.operator.test"),
    ]

    out = _ok(ca_config, "accounts", "show", account)
    shown = dict(line.split(": ", 1) for line in out.splitlines())
    assert shown["status"] == "valid" and shown["contact"] == "mailto:ops@operator.test"
    assert shown["orders"] == "2" and shown["certificates"] == "1 (0 revoked)"
    assert shown["pending authorizations"] == "1"
    stored = ca.store.accounts.account(account)
    assert stored is not None and shown["key thumbprint"] == stored.thumbprint

    code, out, err = _run(ca_config, "accounts", "deactivate", account)
    assert code == 0, err
    assert "1 pending authorizations deactivated" in out
    refused = await flow.order("after.operator.test")
    assert (refused.status, refused.problem_type) == (403, "unauthorized")
    assert "deactivated" in refused.json()["detail"]
    authz = ca.store.orders.authorization(authz_id)
    assert authz is not None and authz.stored_status == AuthorizationStatus.DEACTIVATED
    out = _ok(ca_config, "orders", "list", "--account", account)
    assert [line.split("\t")[1] for line in out.splitlines()] == ["invalid", "valid"]
    out = _ok(ca_config, "accounts", "show", account)
    assert "status: deactivated" in out.splitlines()
    # Its certificate stays valid: deactivation is not revocation (RFC 8555 §7.3.6).
    out = _ok(ca_config, "certs", "list", "--account", account)
    assert out.split("\t")[:3][2] == "valid" and format(leaf.serial_number, "x") in out

    code, _, err = _run(ca_config, "accounts", "deactivate", account)
    assert code == 1 and "deactivated already" in err
    code, _, err = _run(ca_config, "accounts", "show", "nosuchaccount")
    assert code == 1 and err.strip() == "Error: no account nosuchaccount"
    code, _, err = _run(ca_config, "orders", "list", "--account", "nosuchaccount")
    assert code == 1 and "no account" in err


@pytest.mark.parametrize(
    "ident", ["-VeX2encLQGvy06aj2CmLw", "--dashes-begin-this-id0"], ids=["dash", "two"]
)
def test_an_id_that_begins_with_a_dash_is_taken_as_the_id(
    ca: Assembly, ca_config: ServerConfig, ident: str
) -> None:
    """Random base64url ids (accounts', EAB keys') begin with "-" one time in 64: the
    commands that take one read it as the id, not as an unknown option."""
    stored_account(ca.store, datetime.now(UTC), account_id=ident)
    assert ident in _ok(ca_config, "accounts", "show", ident)
    assert _ok(ca_config, "accounts", "deactivate", ident).startswith(f"deactivated: {ident} ")
    assert "deactivated" in _ok(ca_config, "accounts", "show", ident)
    _ok(ca_config, "eab", "add", f"--kid={ident}")
    assert _ok(ca_config, "eab", "revoke", ident) == f"revoked: {ident}\n"

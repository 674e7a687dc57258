"""Operator commands against a running CA's database: `acmekit server eab add` hands a
customer a key that then registers an account over HTTPS; `eab list` shows it bound;
`ari move` changes the window that renewalInfo answers."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from acmekit.protocol import jose
from acmekit.server.ari import cert_id_of
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme, new_key
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port


def acmekit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acmekit", *args], capture_output=True, text=True, check=False
    )


def eab_add(state: Path, kid: str) -> str:
    result = acmekit("server", "eab", "add", "--kid", kid, "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["kid"] == kid
    return lines["hmac-key"]


async def test_eab_add_then_register(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    state = tmp_path / "ca-state"
    hmac_key = eab_add(state, "customer-7")
    settings = {"eab_required": True, "crl": {"listen": f"127.0.0.1:{free_port()}"}}
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, state_dir=state,
        settings=settings,
    ) as server:  # fmt: skip
        acme = HttpRawAcme(server.base_url, str(server.root_path))
        try:
            assert (await acme.directory())["meta"]["externalAccountRequired"] is True
            url = f"{acme.base}/acme/new-account"
            key = new_key()
            eab = jose.eab_sign(key, "customer-7", jose.b64d(hmac_key), url)
            body = {"termsOfServiceAgreed": True, "externalAccountBinding": eab}
            created = await acme.post(url, body, key)
            assert created.status == 201, created.body
            other = new_key()
            body["externalAccountBinding"] = jose.eab_sign(
                other, "customer-7", jose.b64d(hmac_key), url
            )
            again = await acme.post(url, body, other)
            assert again.status == 403 and again.problem_type == "unauthorized"
        finally:
            await acme.close()
    listed = acmekit("server", "--state-dir", str(state), "eab", "list")
    account_id = (created.header("location") or "").rsplit("/", 1)[1]
    assert "customer-7\t" in listed.stdout and f"bound to account {account_id}" in listed.stdout
    assert hmac_key not in listed.stdout
    assert (
        acmekit("server", "eab", "revoke", "customer-7", "--state-dir", str(state)).returncode == 0
    )
    assert (
        acmekit("server", "eab", "revoke", "customer-7", "--state-dir", str(state)).returncode == 1
    )


def test_eab_add_prints_certbot_flags_that_survive_a_leading_dash(tmp_path: Path) -> None:
    # A base64url HMAC key starts with "-" once in 32 keys; a key ID may too. certbot
    # parses its flags with argparse, which reads a separate "-..." value as a flag.
    result = acmekit("server", "eab", "add", "--kid=-dash", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    like_certbot = argparse.ArgumentParser(exit_on_error=False)
    like_certbot.add_argument("--eab-kid")
    like_certbot.add_argument("--eab-hmac-key")
    parsed = like_certbot.parse_args(shlex.split(lines["certbot"]))
    assert (parsed.eab_kid, parsed.eab_hmac_key) == ("-dash", lines["hmac-key"])


async def test_ari_move_from_the_command_line(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    state = tmp_path / "ca-state"
    settings = {"crl": {"listen": f"127.0.0.1:{free_port()}"}}
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, state_dir=state,
        settings=settings,
    ) as server:  # fmt: skip
        acme = HttpRawAcme(server.base_url, str(server.root_path))
        try:
            flow = Flow(acme, responder)
            _, order = await flow.issue("moved.cli.test")
            leaf = x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)[0]
            serial = format(leaf.serial_number, "x")
            moved = acmekit("server", "ari", "move", "--state-dir", str(state),
                            "--serial", serial, "--to", "2031-02-03T04:05:06Z")  # fmt: skip
            assert moved.returncode == 0, moved.stderr
            info_url = f"{(await acme.directory())['renewalInfo']}/{cert_id_of(leaf)}"
            info = await acme.request("GET", info_url)
            assert info.json()["suggestedWindow"]["start"] == "2031-02-03T04:05:06Z"
            missing = acmekit("server", "ari", "move", "--state-dir", str(state),
                              "--serial", "abcdef", "--now")  # fmt: skip
            assert missing.returncode == 1 and "no certificate" in missing.stderr
        finally:
            await acme.close()


def test_operator_commands_refuse_a_missing_database(tmp_path: Path) -> None:
    for argv in (
        ["server", "eab", "list", "--state-dir", str(tmp_path / "typo")],
        ["server", "ari", "move", "--serial", "1", "--now", "--state-dir", str(tmp_path / "t")],
    ):
        result = acmekit(*argv)
        assert result.returncode == 1
        assert "no CA database" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "typo").exists()

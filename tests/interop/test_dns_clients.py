"""Real ACME clients publish dns-01 challenges to `acmekit dns`; Pebble validates there.

certbot (Debian's, with python3-certbot-dns-rfc2136) uses RFC 2136 UPDATE with a TSIG
key; lego (Debian's) uses its `exec` provider with a hook that calls our HTTP API. Both
obtain a certificate for a name and its wildcard, whose two challenges share one TXT
owner, so both values must be served at once.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit_testkit.cli import certbot_dirs
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.pebble import PebbleHandle, running_pebble
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop

TSIG_SECRET = base64.b64encode(b"certbot rfc2136 interop secret!!").decode()
TSIG_NAME = "certbot-key"
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}


def pebble_for(tmp_path: Path, dns_server: DnsServerHandle) -> AbstractContextManager[PebbleHandle]:
    return running_pebble(
        tmp_path,
        dns_port=dns_server.dns_port,
        http_port=free_port(),
        tls_port=free_port(),
        env=PEBBLE_ENV,
    )


def check_certificate(pem: bytes, names: set[str], pebble: PebbleHandle) -> None:
    """The leaf names exactly `names` and chains to Pebble's issuing root."""
    chain = x509.load_pem_x509_certificates(pem)
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert set(san.value.get_values_for_type(x509.DNSName)) == names
    root = x509.load_pem_x509_certificate(pebble.issuing_root_pem().encode())
    for child, parent in zip(chain, [*chain[1:], root], strict=True):
        child.verify_directly_issued_by(parent)


def run(argv: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("wb") as out:
        proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=240)
    assert proc.returncode == 0, log.read_text()[-4000:]


def test_certbot_rfc2136_gets_a_wildcard_certificate(tmp_path: Path) -> None:
    key = f"hmac-sha256:{TSIG_NAME}:{TSIG_SECRET}"
    with (
        dns_server_process(tmp_path, "--tsig-key", key) as dns_server,
        pebble_for(tmp_path, dns_server) as pebble,
    ):
        ini = tmp_path / "rfc2136.ini"
        ini.write_text(
            f"dns_rfc2136_server = {dns_server.host}\n"
            f"dns_rfc2136_port = {dns_server.dns_port}\n"
            f"dns_rfc2136_name = {TSIG_NAME}\n"
            f"dns_rfc2136_secret = {TSIG_SECRET}\n"
            "dns_rfc2136_algorithm = HMAC-SHA256\n"
        )
        ini.chmod(0o600)
        argv = [
            "/usr/bin/certbot", "certonly", "--non-interactive", "--agree-tos",
            "-m", "a@wild.test", "--server", pebble.directory_url,
            *certbot_dirs(tmp_path), "--key-type", "ecdsa",
            "--authenticator", "dns-rfc2136", "--dns-rfc2136-credentials", str(ini),
            "--dns-rfc2136-propagation-seconds", "1",
            "-d", "wild.test", "-d", "*.wild.test",
        ]  # fmt: skip
        env = {**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.root_ca_path)}
        run(argv, env, tmp_path / "certbot.out")
        fullchain = tmp_path / "etc" / "live" / "wild.test" / "fullchain.pem"
        check_certificate(fullchain.read_bytes(), {"wild.test", "*.wild.test"}, pebble)
        privkey = tmp_path / "etc" / "live" / "wild.test" / "privkey.pem"
        assert b"PRIVATE KEY" in privkey.read_bytes()


HOOK = """\
import json, sys, urllib.request
action, fqdn, value = sys.argv[1:4]
path, doc = ("/set-txt", {{"host": fqdn, "value": value}}) if action == "present" else (
    "/clear-txt", {{"host": fqdn}})
req = urllib.request.Request("{api}" + path, data=json.dumps(doc).encode(), method="POST")
urllib.request.urlopen(req, timeout=10).read()
"""


def write_hook(tmp_path: Path, api_url: str) -> Path:
    script = tmp_path / "hook.py"
    script.write_text(HOOK.format(api=api_url))
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    hook.chmod(0o755)
    return hook


def test_lego_exec_hook_gets_a_wildcard_certificate(tmp_path: Path) -> None:
    with (
        dns_server_process(tmp_path) as dns_server,
        pebble_for(tmp_path, dns_server) as pebble,
    ):
        env = {
            **os.environ,
            "LEGO_CA_CERTIFICATES": str(pebble.root_ca_path),
            "EXEC_PATH": str(write_hook(tmp_path, dns_server.api_url)),
            "EXEC_SEQUENCE_INTERVAL": "1",
            "EXEC_PROPAGATION_TIMEOUT": "20",
            "EXEC_POLLING_INTERVAL": "1",
        }
        argv = [
            "/usr/bin/lego", "--server", pebble.directory_url, "--accept-tos",
            "--email", "a@wild.test", "--path", str(tmp_path / "lego"), "--key-type", "ec256",
            "--domains", "wild.test", "--domains", "*.wild.test",
            "--dns", "exec", "--dns.resolvers", dns_server.resolver, "--dns.disable-cp", "run",
        ]  # fmt: skip
        run(argv, env, tmp_path / "lego.out")
        cert = tmp_path / "lego" / "certificates" / "_.wild.test.crt"
        if not cert.exists():
            cert = tmp_path / "lego" / "certificates" / "wild.test.crt"
        check_certificate(cert.read_bytes(), {"wild.test", "*.wild.test"}, pebble)
        assert isinstance(
            x509.load_pem_x509_certificate(cert.read_bytes()).public_key(),
            ec.EllipticCurvePublicKey,
        )

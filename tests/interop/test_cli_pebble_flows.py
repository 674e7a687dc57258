"""The `acmekit` command line against Debian's Pebble with its chaos on (5% of good nonces
rejected, authorizations reused, every challenge validated three times), as a user runs
it: a subprocess per command. Pebble's VA asks `acmekit dns` (a real process, with a
TSIG key for RFC 2136 UPDATEs) for every name, and connects to the ports the flags name.

Key rollover has no command (certbot has none either); the library's `key_change`
against Pebble is shown in tests/integration/test_client_pebble.py.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import pytest
from cryptography import x509

from support.dnsserver import DnsServerHandle, dns_server_process
from support.pebble import PebbleHandle, running_pebble
from support.ports import free_port
from support.verify import dns_names, openssl_verify

pytestmark = pytest.mark.interop

TSIG_NAME = "acme-update."
TSIG_SECRET = base64.b64encode(b"a tsig secret of thirty-two byte").decode()
EAB_KID = "kid-cli"
EAB_KEY = base64.urlsafe_b64encode(b"an hmac key for the eab test ok!").rstrip(b"=").decode()


@dataclass(frozen=True)
class Stack:
    pebble: PebbleHandle
    dns: DnsServerHandle
    http_port: int
    tls_port: int
    issuing_root: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("cli-pebble")
    http_port, tls_port = free_port(), free_port()
    tsig = f"hmac-sha256:{TSIG_NAME}:{TSIG_SECRET}"
    with (
        dns_server_process(tmp, "--tsig-key", tsig) as dns_server,
        running_pebble(
            tmp, dns_port=dns_server.dns_port, http_port=http_port, tls_port=tls_port
        ) as pebble,
    ):
        root = tmp / "issuing-root.pem"
        root.write_text(pebble.issuing_root_pem())
        yield Stack(pebble, dns_server, http_port, tls_port, root)


@pytest.fixture
def webroot(stack: Stack, tmp_path: Path) -> Iterator[Path]:
    """A plain web server on Pebble's http-01 port serving a directory."""
    root = tmp_path / "www"
    root.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
         "--directory", str(root), str(stack.http_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield root
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _dirs(tmp: Path) -> list[str]:
    return ["--config-dir", str(tmp / "etc"), "--work-dir", str(tmp / "work"),
            "--logs-dir", str(tmp / "logs")]  # fmt: skip


def acmekit(pebble: PebbleHandle, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.root_ca_path)}
    argv = [sys.executable, "-m", "acmekit", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240)


def certonly(pebble: PebbleHandle, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return acmekit(
        pebble, "certonly", "-n", "--agree-tos", "-m", "ops@peb.test",
        "--server", pebble.directory_url, *_dirs(tmp), *args,
    )  # fmt: skip


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def _verified(stack: Stack, tmp: Path, name: str) -> x509.Certificate:
    """The lineage's leaf, verified by openssl through Pebble's chain to its root."""
    live = tmp / "etc" / "live" / name
    return openssl_verify(stack.issuing_root, live / "fullchain.pem", tmp)


def _conf(tmp: Path, name: str) -> str:
    return (tmp / "etc" / "renewal" / f"{name}.conf").read_text()


def _txt(stack: Stack, name: str) -> list[str]:
    query = dns.message.make_query(name, "TXT")
    answer = dns.query.tcp(query, "127.0.0.1", port=stack.dns.dns_port, timeout=5)
    return [b"".join(r.strings).decode() for rrset in answer.answer for r in rrset]


def test_standalone_http01(stack: Stack, tmp_path: Path) -> None:
    flags = ["--standalone", "--http-01-port", str(stack.http_port), "--http-01-address",
             "127.0.0.1"]  # fmt: skip
    _ok(certonly(stack.pebble, tmp_path, *flags, "-d", "sa.peb.test", "-d", "www.sa.peb.test"))
    cert = _verified(stack, tmp_path, "sa.peb.test")
    assert dns_names(cert) == ["sa.peb.test", "www.sa.peb.test"]
    assert "authenticator = standalone" in _conf(tmp_path, "sa.peb.test")


def test_webroot(stack: Stack, tmp_path: Path, webroot: Path) -> None:
    _ok(certonly(stack.pebble, tmp_path, "--webroot", "-w", str(webroot), "-d", "web.peb.test"))
    assert dns_names(_verified(stack, tmp_path, "web.peb.test")) == ["web.peb.test"]
    assert list(webroot.iterdir()) == []  # the files and the folders it made are removed


def test_tls_alpn01(stack: Stack, tmp_path: Path) -> None:
    # The http-01 port is one nobody serves: only tls-alpn-01 can succeed.
    _ok(
        certonly(
            stack.pebble, tmp_path, "--standalone", "--preferred-challenges", "tls-alpn-01",
            "--tls-alpn-01-port", str(stack.tls_port), "--http-01-address", "127.0.0.1",
            "--http-01-port", str(free_port()), "-d", "alpn.peb.test",
        )
    )  # fmt: skip
    assert dns_names(_verified(stack, tmp_path, "alpn.peb.test")) == ["alpn.peb.test"]
    assert "pref_challs = tls-alpn-01" in _conf(tmp_path, "alpn.peb.test")


def test_dns01_wildcard_over_rfc2136(stack: Stack, tmp_path: Path) -> None:
    ini = tmp_path / "rfc2136.ini"
    ini.write_text(
        "dns_rfc2136_server = 127.0.0.1\n"
        f"dns_rfc2136_port = {stack.dns.dns_port}\n"
        f"dns_rfc2136_name = {TSIG_NAME}\n"
        f"dns_rfc2136_secret = {TSIG_SECRET}\n"
        "dns_rfc2136_algorithm = HMAC-SHA256\n"
    )
    ini.chmod(0o600)
    # No --dns-resolver: the propagation check asks the server named in the ini.
    _ok(
        certonly(
            stack.pebble, tmp_path, "--dns-rfc2136", "--dns-rfc2136-credentials", str(ini),
            "--dns-rfc2136-propagation-seconds", "30",
            "-d", "rfc.peb.test", "-d", "*.rfc.peb.test",
        )
    )  # fmt: skip
    cert = _verified(stack, tmp_path, "rfc.peb.test")
    assert dns_names(cert) == ["*.rfc.peb.test", "rfc.peb.test"]
    assert _txt(stack, "_acme-challenge.rfc.peb.test.") == []  # both values removed
    assert "authenticator = dns-rfc2136" in _conf(tmp_path, "rfc.peb.test")


def _env_dump_hook(tmp: Path, name: str, action: str) -> Path:
    """A hook script that appends its CERTBOT_* environment as one JSON line, then acts."""
    script = tmp / f"{name}.sh"
    log = tmp / f"{name}.jsonl"
    script.write_text(
        "#!/bin/sh\nset -e\n"
        f"{sys.executable} -c 'import json, os; print(json.dumps({{k: v for k, v in "
        f'os.environ.items() if k.startswith("CERTBOT_")}}))\' >> {log}\n'
        f"{action}\n"
    )
    script.chmod(0o755)
    return script


def _lines(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_manual_http01_hooks_see_certbots_environment(
    stack: Stack, tmp_path: Path, webroot: Path
) -> None:
    folder = webroot / ".well-known" / "acme-challenge"
    auth = _env_dump_hook(
        tmp_path, "auth",
        f'mkdir -p {folder} && printf %s "$CERTBOT_VALIDATION" > {folder}/$CERTBOT_TOKEN'
        ' && echo "published $CERTBOT_DOMAIN"',
    )  # fmt: skip
    cleanup = _env_dump_hook(tmp_path, "cleanup", f"rm {folder}/$CERTBOT_TOKEN")
    names = ["m.peb.test", "www.m.peb.test"]
    _ok(
        certonly(
            stack.pebble, tmp_path, "--manual", "--preferred-challenges", "http-01",
            "--manual-auth-hook", str(auth), "--manual-cleanup-hook", str(cleanup),
            "-d", names[0], "-d", names[1],
        )
    )  # fmt: skip
    assert dns_names(_verified(stack, tmp_path, names[0])) == names
    seen = _lines(tmp_path / "auth.jsonl")
    assert sorted(e["CERTBOT_DOMAIN"] for e in seen) == names
    assert [e["CERTBOT_REMAINING_CHALLENGES"] for e in seen] == ["1", "0"]
    thumbprints = set()
    for e in seen:
        assert sorted(e["CERTBOT_ALL_DOMAINS"].split(",")) == names
        token, _, thumbprint = e["CERTBOT_VALIDATION"].partition(".")
        assert token == e["CERTBOT_TOKEN"] and len(thumbprint) == 43
        thumbprints.add(thumbprint)
    assert len(thumbprints) == 1  # one account key
    cleaned = {e["CERTBOT_DOMAIN"]: e for e in _lines(tmp_path / "cleanup.jsonl")}
    for e in seen:
        after = cleaned[e["CERTBOT_DOMAIN"]]
        assert after["CERTBOT_AUTH_OUTPUT"].strip() == f"published {e['CERTBOT_DOMAIN']}"
        assert after["CERTBOT_TOKEN"] == e["CERTBOT_TOKEN"]
    assert list(folder.iterdir()) == []


def test_manual_dns01_hooks_for_a_wildcard(stack: Stack, tmp_path: Path) -> None:
    api = stack.dns.api_url
    set_txt = (
        f'curl -sf -X POST -d \'{{"host":"_acme-challenge.\'$CERTBOT_DOMAIN\'.",'
        f'"value":"\'$CERTBOT_VALIDATION\'"}}\' {api}/set-txt'
    )
    clear_txt = (
        f"curl -sf -X POST -d '{{\"host\":\"_acme-challenge.'$CERTBOT_DOMAIN'.\"}}' {api}/clear-txt"
    )
    auth = _env_dump_hook(tmp_path, "auth", set_txt)
    cleanup = _env_dump_hook(tmp_path, "cleanup", clear_txt)
    _ok(
        certonly(
            stack.pebble, tmp_path, "--manual", "--preferred-challenges", "dns-01",
            "--manual-auth-hook", str(auth), "--manual-cleanup-hook", str(cleanup),
            "-d", "md.peb.test", "-d", "*.md.peb.test",
        )
    )  # fmt: skip
    cert = _verified(stack, tmp_path, "md.peb.test")
    assert dns_names(cert) == ["*.md.peb.test", "md.peb.test"]
    seen = _lines(tmp_path / "auth.jsonl")
    # A name and its wildcard: two challenges for one base name, two different values.
    assert [e["CERTBOT_DOMAIN"] for e in seen] == ["md.peb.test", "md.peb.test"]
    assert [e["CERTBOT_REMAINING_CHALLENGES"] for e in seen] == ["1", "0"]
    assert all(e["CERTBOT_ALL_DOMAINS"] == "md.peb.test" for e in seen)
    assert all("CERTBOT_TOKEN" not in e for e in seen)
    values = {e["CERTBOT_VALIDATION"] for e in seen}
    assert len(values) == 2 and all(len(v) == 43 for v in values)
    assert len(_lines(tmp_path / "cleanup.jsonl")) == 2
    assert _txt(stack, "_acme-challenge.md.peb.test.") == []


def _pebble_status(pebble: PebbleHandle, cert: x509.Certificate) -> str:
    url = f"{pebble.management_url}/cert-status-by-serial/{cert.serial_number:x}"
    ctx = ssl.create_default_context(cafile=str(pebble.root_ca_path))
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        status: str = json.load(resp)["Status"]
        return status


def test_revoke_then_the_lineage_is_gone(stack: Stack, tmp_path: Path) -> None:
    flags = ["--standalone", "--http-01-port", str(stack.http_port), "--http-01-address",
             "127.0.0.1"]  # fmt: skip
    _ok(certonly(stack.pebble, tmp_path, *flags, "-d", "rev.peb.test"))
    cert = _verified(stack, tmp_path, "rev.peb.test")
    assert _pebble_status(stack.pebble, cert) == "Valid"
    revoked = acmekit(
        stack.pebble, "revoke", "-n", "--cert-name", "rev.peb.test",
        "--reason", "keycompromise", *_dirs(tmp_path),
    )  # fmt: skip
    _ok(revoked)
    assert _pebble_status(stack.pebble, cert) == "Revoked"
    assert not (tmp_path / "etc" / "renewal" / "rev.peb.test.conf").exists()
    assert not (tmp_path / "etc" / "live" / "rev.peb.test").exists()


@pytest.fixture(scope="module")
def eab_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PebbleHandle, int]]:
    tmp = tmp_path_factory.mktemp("cli-pebble-eab")
    http_port = free_port()
    with (
        dns_server_process(tmp) as dns_server,
        running_pebble(
            tmp, dns_port=dns_server.dns_port, http_port=http_port, tls_port=free_port(),
            eab_keys={EAB_KID: EAB_KEY},
        ) as pebble,
    ):  # fmt: skip
        yield pebble, http_port


def test_eab_is_required_and_then_used(
    eab_pebble: tuple[PebbleHandle, int], tmp_path: Path
) -> None:
    pebble, http_port = eab_pebble
    flags = ["--standalone", "--http-01-port", str(http_port), "--http-01-address",
             "127.0.0.1", "-d", "eab.peb.test"]  # fmt: skip
    refused = certonly(pebble, tmp_path / "no-eab", *flags)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith("acmekit: ") and "externalAccount" in refused.stderr
    wrong = certonly(pebble, tmp_path / "wrong", *flags, "--eab-kid", EAB_KID,
                     "--eab-hmac-key", EAB_KEY[::-1])  # fmt: skip
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    _ok(certonly(pebble, tmp_path, *flags, "--eab-kid", EAB_KID, "--eab-hmac-key", EAB_KEY))
    leaf = x509.load_pem_x509_certificate(
        (tmp_path / "etc" / "live" / "eab.peb.test" / "cert.pem").read_bytes()
    )
    assert dns_names(leaf) == ["eab.peb.test"]

"""The `acmekit` command line as a user runs it (a subprocess per command), against two
CAs in turn: Debian's Pebble with its chaos on (5% of good nonces rejected,
authorizations reused, every challenge validated three times) and `acmekit server` as a
process. Both CAs ask one `acmekit dns` (a real process, with a TSIG key for RFC 2136
UPDATEs) for every name, and connect to the ports the flags name. Names carry the CA's
kind (`sa.pebble.test`, `sa.acmekit.test`), so nothing one run publishes meets the other.

Key rollover has no command (certbot has none either); the library's `key_change`
against Pebble is shown in tests/integration/test_client_pebble.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from cryptography import x509

from acmekit_testkit.acme_cas import CA_KINDS, AcmeCa, running_ca
from acmekit_testkit.cli import certbot_dirs, run_acmekit, serving_webroot
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

pytestmark = pytest.mark.interop

TSIG_NAME = "acme-update."
TSIG_SECRET = base64.b64encode(b"a tsig secret of thirty-two byte").decode()
EAB_KID = "kid-cli"
EAB_KEY = base64.urlsafe_b64encode(b"an hmac key for the eab test ok!").rstrip(b"=").decode()


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServerHandle]:
    """One `acmekit dns` for every CA of this module; UPDATEs need the TSIG key."""
    tsig = f"hmac-sha256:{TSIG_NAME}:{TSIG_SECRET}"
    with dns_server_process(tmp_path_factory.mktemp("cli-dns"), "--tsig-key", tsig) as handle:
        yield handle


@pytest.fixture(scope="module", params=CA_KINDS)
def ca_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(scope="module")
def ca(
    ca_kind: str, dns_server: DnsServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AcmeCa]:
    with running_ca(ca_kind, tmp_path_factory.mktemp(f"cli-{ca_kind}"), dns_server) as handle:
        yield handle


@pytest.fixture(scope="module")
def eab_ca(
    ca_kind: str, dns_server: DnsServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AcmeCa]:
    """A second CA of the same kind that requires External Account Binding."""
    workdir = tmp_path_factory.mktemp(f"cli-{ca_kind}-eab")
    with running_ca(ca_kind, workdir, dns_server, eab_keys={EAB_KID: EAB_KEY}) as handle:
        yield handle


@pytest.fixture
def webroot(ca: AcmeCa, tmp_path: Path) -> Iterator[Path]:
    """A plain web server on the CA's http-01 port serving a directory."""
    with serving_webroot(tmp_path / "www", ca.http_port) as root:
        yield root


def _name(ca: AcmeCa, label: str) -> str:
    return f"{label}.{ca.kind}.test"


def acmekit(ca: AcmeCa, *args: str) -> subprocess.CompletedProcess[str]:
    return run_acmekit(ca.ca_bundle, *args, timeout=240)


def certonly(ca: AcmeCa, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return acmekit(
        ca, "certonly", "-n", "--agree-tos", "-m", f"ops@{ca.kind}.test",
        "--server", ca.directory_url, *certbot_dirs(tmp), *args,
    )  # fmt: skip


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def _verified(ca: AcmeCa, tmp: Path, name: str) -> x509.Certificate:
    """The lineage's leaf, verified by openssl through the CA's chain to its root."""
    live = tmp / "etc" / "live" / name
    return openssl_verify(ca.issuing_root, live / "fullchain.pem", tmp)


def _conf(tmp: Path, name: str) -> str:
    return (tmp / "etc" / "renewal" / f"{name}.conf").read_text()


def _txt(ca: AcmeCa, name: str) -> list[str]:
    query = dns.message.make_query(name, "TXT")
    answer = dns.query.tcp(query, "127.0.0.1", port=ca.dns.dns_port, timeout=5)
    return [b"".join(r.strings).decode() for rrset in answer.answer for r in rrset]


def _standalone(ca: AcmeCa) -> list[str]:
    return ["--standalone", "--http-01-port", str(ca.http_port), "--http-01-address",
            "127.0.0.1"]  # fmt: skip


def test_standalone_http01(ca: AcmeCa, tmp_path: Path) -> None:
    names = [_name(ca, "sa"), _name(ca, "www.sa")]
    _ok(certonly(ca, tmp_path, *_standalone(ca), "-d", names[0], "-d", names[1]))
    cert = _verified(ca, tmp_path, names[0])
    assert dns_names(cert) == names
    assert "authenticator = standalone" in _conf(tmp_path, names[0])


def test_webroot(ca: AcmeCa, tmp_path: Path, webroot: Path) -> None:
    name = _name(ca, "web")
    _ok(certonly(ca, tmp_path, "--webroot", "-w", str(webroot), "-d", name))
    assert dns_names(_verified(ca, tmp_path, name)) == [name]
    assert list(webroot.iterdir()) == []  # the files and the folders it made are removed


def test_tls_alpn01(ca: AcmeCa, tmp_path: Path) -> None:
    name = _name(ca, "alpn")
    # The http-01 port is one nobody serves: only tls-alpn-01 can succeed.
    _ok(
        certonly(
            ca, tmp_path, "--standalone", "--preferred-challenges", "tls-alpn-01",
            "--tls-alpn-01-port", str(ca.tls_port), "--http-01-address", "127.0.0.1",
            "--http-01-port", str(free_port()), "-d", name,
        )
    )  # fmt: skip
    assert dns_names(_verified(ca, tmp_path, name)) == [name]
    assert "pref_challs = tls-alpn-01" in _conf(tmp_path, name)


def test_dns01_wildcard_over_rfc2136(ca: AcmeCa, tmp_path: Path) -> None:
    name = _name(ca, "rfc")
    ini = tmp_path / "rfc2136.ini"
    ini.write_text(
        "dns_rfc2136_server = 127.0.0.1\n"
        f"dns_rfc2136_port = {ca.dns.dns_port}\n"
        f"dns_rfc2136_name = {TSIG_NAME}\n"
        f"dns_rfc2136_secret = {TSIG_SECRET}\n"
        "dns_rfc2136_algorithm = HMAC-SHA256\n"
    )
    ini.chmod(0o600)
    # No --dns-resolver: the propagation check asks the server named in the ini.
    _ok(
        certonly(
            ca, tmp_path, "--dns-rfc2136", "--dns-rfc2136-credentials", str(ini),
            "--dns-rfc2136-propagation-seconds", "30", "-d", name, "-d", f"*.{name}",
        )
    )  # fmt: skip
    cert = _verified(ca, tmp_path, name)
    assert dns_names(cert) == [f"*.{name}", name]
    assert _txt(ca, f"_acme-challenge.{name}.") == []  # both values removed
    assert "authenticator = dns-rfc2136" in _conf(tmp_path, name)


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
    ca: AcmeCa, tmp_path: Path, webroot: Path
) -> None:
    folder = webroot / ".well-known" / "acme-challenge"
    auth = _env_dump_hook(
        tmp_path, "auth",
        f'mkdir -p {folder} && printf %s "$CERTBOT_VALIDATION" > {folder}/$CERTBOT_TOKEN'
        ' && echo "published $CERTBOT_DOMAIN"',
    )  # fmt: skip
    cleanup = _env_dump_hook(tmp_path, "cleanup", f"rm {folder}/$CERTBOT_TOKEN")
    names = [_name(ca, "m"), _name(ca, "www.m")]
    _ok(
        certonly(
            ca, tmp_path, "--manual", "--preferred-challenges", "http-01",
            "--manual-auth-hook", str(auth), "--manual-cleanup-hook", str(cleanup),
            "-d", names[0], "-d", names[1],
        )
    )  # fmt: skip
    assert dns_names(_verified(ca, tmp_path, names[0])) == names
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


def test_manual_dns01_hooks_for_a_wildcard(ca: AcmeCa, tmp_path: Path) -> None:
    name = _name(ca, "md")
    api = ca.dns.api_url
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
            ca, tmp_path, "--manual", "--preferred-challenges", "dns-01",
            "--manual-auth-hook", str(auth), "--manual-cleanup-hook", str(cleanup),
            "-d", name, "-d", f"*.{name}",
        )
    )  # fmt: skip
    cert = _verified(ca, tmp_path, name)
    assert dns_names(cert) == [f"*.{name}", name]
    seen = _lines(tmp_path / "auth.jsonl")
    # A name and its wildcard: two challenges for one base name, two different values.
    assert [e["CERTBOT_DOMAIN"] for e in seen] == [name, name]
    assert [e["CERTBOT_REMAINING_CHALLENGES"] for e in seen] == ["1", "0"]
    # As certbot gives it: one domain per challenge, so the base name twice.
    assert all(e["CERTBOT_ALL_DOMAINS"] == f"{name},{name}" for e in seen)
    assert all("CERTBOT_TOKEN" not in e for e in seen)
    values = {e["CERTBOT_VALIDATION"] for e in seen}
    assert len(values) == 2 and all(len(v) == 43 for v in values)
    assert len(_lines(tmp_path / "cleanup.jsonl")) == 2
    assert _txt(ca, f"_acme-challenge.{name}.") == []


def test_revoke_then_the_lineage_is_gone(ca: AcmeCa, tmp_path: Path) -> None:
    name = _name(ca, "rev")
    _ok(certonly(ca, tmp_path, *_standalone(ca), "-d", name))
    cert = _verified(ca, tmp_path, name)
    assert ca.revoked(cert.serial_number) is False
    revoked = acmekit(
        ca,
        "revoke",
        "-n",
        "--cert-name",
        name,
        "--reason",
        "keycompromise",
        *certbot_dirs(tmp_path),
    )
    _ok(revoked)
    assert ca.revoked(cert.serial_number) is True
    assert not (tmp_path / "etc" / "renewal" / f"{name}.conf").exists()
    assert not (tmp_path / "etc" / "live" / name).exists()


def test_revoke_with_the_certificates_key_needs_no_account(ca: AcmeCa, tmp_path: Path) -> None:
    """certbot's `revoke --cert-path C --key-path K`: signed with the certificate's own key
    (RFC 8555 §7.6), from a config dir that holds no account and no lineage."""
    name = _name(ca, "revkey")
    _ok(certonly(ca, tmp_path / "issued", *_standalone(ca), "-d", name))
    cert = _verified(ca, tmp_path / "issued", name)
    live = tmp_path / "issued" / "etc" / "live" / name
    elsewhere = tmp_path / "elsewhere"
    flags = ["revoke", "-n", "--server", ca.directory_url, "--cert-path",
             str(live / "cert.pem"), *certbot_dirs(elsewhere)]  # fmt: skip
    # Another certificate's key is refused before the CA is asked, in one line.
    _ok(certonly(ca, tmp_path / "other", *_standalone(ca), "-d", _name(ca, "other-revkey")))
    other_key = tmp_path / "other" / "etc" / "live" / _name(ca, "other-revkey") / "privkey.pem"
    wrong = acmekit(ca, *flags, "--key-path", str(other_key))
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert wrong.stderr.startswith("acmekit: the private key ")
    assert "is not the key of certificate" in wrong.stderr
    unreadable = acmekit(ca, *flags, "--key-path", str(live / "cert.pem"))
    assert unreadable.returncode != 0 and "Traceback" not in unreadable.stderr
    assert unreadable.stderr.startswith("acmekit: cannot read private key ")
    assert ca.revoked(cert.serial_number) is False
    _ok(acmekit(ca, *flags, "--reason", "keycompromise", "--key-path", str(live / "privkey.pem")))
    assert ca.revoked(cert.serial_number) is True
    assert not (elsewhere / "etc" / "accounts").exists()  # no account was made for it


def test_reconfigure_saves_settings_only_after_a_test_run_passes(
    ca: AcmeCa, tmp_path: Path
) -> None:
    """certbot's reconfigure: the changed settings get a dry-run renewal first; only one
    that passes is written to the renewal conf, and no certificate is saved by it."""
    name = _name(ca, "reconf")
    _ok(certonly(ca, tmp_path, *_standalone(ca), "-d", name))
    before = _conf(tmp_path, name)
    nothing = acmekit(ca, "reconfigure", "--cert-name", name, *certbot_dirs(tmp_path))
    assert nothing.returncode == 2 and "give at least one setting to change" in nothing.stderr
    served, deployed = tmp_path / "www", tmp_path / "deployed"
    reconfigure = ["reconfigure", "--cert-name", name, "--webroot", "-w", str(served),
                   "--deploy-hook", f"touch {deployed}", *certbot_dirs(tmp_path)]  # fmt: skip
    failed = acmekit(ca, *reconfigure)  # nobody serves the webroot yet
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.startswith("acmekit: ")
    assert _conf(tmp_path, name) == before  # a failed test run changes nothing
    with serving_webroot(served, ca.http_port):
        moved = acmekit(ca, *reconfigure)
    _ok(moved)
    assert "Successfully updated configuration" in moved.stdout
    conf = _conf(tmp_path, name)
    assert "authenticator = webroot" in conf and f"webroot_path = {served}," in conf
    assert f"renew_hook = touch {deployed}" in conf
    assert os.readlink(tmp_path / "etc" / "live" / name / "cert.pem").endswith("cert1.pem")
    assert not deployed.exists()  # a test run deploys nothing


def test_eab_is_required_and_then_used(eab_ca: AcmeCa, tmp_path: Path) -> None:
    name = _name(eab_ca, "eab")
    flags = [*_standalone(eab_ca), "-d", name]
    refused = certonly(eab_ca, tmp_path / "no-eab", *flags)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    # The directory says EAB is required: the client names the flags before it registers.
    assert refused.stderr.startswith("acmekit: ") and "--eab-kid" in refused.stderr
    wrong = certonly(eab_ca, tmp_path / "wrong", *flags, "--eab-kid", EAB_KID,
                     "--eab-hmac-key", EAB_KEY[::-1])  # fmt: skip
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert wrong.stderr.startswith("acmekit: unauthorized")  # the MAC does not verify
    # One line, and no connection left open behind it.
    assert "Unclosed" not in refused.stderr + wrong.stderr
    _ok(certonly(eab_ca, tmp_path, *flags, "--eab-kid", EAB_KID, "--eab-hmac-key", EAB_KEY))
    assert dns_names(_verified(eab_ca, tmp_path, name)) == [name]

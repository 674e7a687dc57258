"""certbot's `certonly` flags through the `acmekit` command line against `acmekit server`
(a real process) and `acmekit dns`: the user's own CSR, IP address identifiers,
profiles, the interactive manual mode, key reuse, key types and curves, and the shape
of `certificates --json`.

Most tests share one config dir (one account: the CA limits new accounts per address)
and use names of their own.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify


@dataclass(frozen=True)
class Ca:
    server: ServerHandle
    dns: DnsServerHandle
    http01_port: int
    etc: Path  # the shared config dir's parent (etc/, work/, logs/ inside)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ca]:
    workdir = tmp_path_factory.mktemp("cli-flags")
    http01 = free_port()
    with (
        dns_server_process(workdir) as dns_server,
        running_acmekit_server(workdir, dns_port=dns_server.dns_port, http01_port=http01) as srv,
    ):
        shared = workdir / "shared"
        ca = Ca(srv, dns_server, http01, shared)
        _ok(acmekit(ca, "register", "--agree-tos", "-m", "ops@flags.test",
                    "--server", srv.directory_url, *certbot_dirs(shared)))  # fmt: skip
        yield ca


def acmekit(ca: Ca, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_acmekit(ca.server.root_path, *args, cwd=cwd)


def certonly(ca: Ca, *args: str, base: Path | None = None) -> subprocess.CompletedProcess[str]:
    return acmekit(
        ca, "certonly", "-n", "--agree-tos", "-m", "ops@flags.test",
        "--server", ca.server.directory_url, *certbot_dirs(base or ca.etc), *args,
    )  # fmt: skip


def standalone(ca: Ca) -> list[str]:
    return ["--standalone", "--http-01-port", str(ca.http01_port), "--http-01-address", "127.0.0.1"]


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def _one_line_failure(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("acmekit: "), result.stderr


def _live(ca: Ca, name: str, kind: str = "cert") -> Path:
    return ca.etc / "etc" / "live" / name / f"{kind}.pem"


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# -- --csr --------------------------------------------------------------------------------


def _write_csr(path: Path, *names: str) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key


def test_csr_writes_numbered_files_in_the_current_dir(ca: Ca, tmp_path: Path) -> None:
    key = _write_csr(tmp_path / "req.pem", "csr.flags.test", "www.csr.flags.test")
    args = ["certonly", "-n", "--server", ca.server.directory_url, *certbot_dirs(ca.etc),
            "--csr", "req.pem", *standalone(ca)]  # fmt: skip
    _ok(acmekit(ca, *args, cwd=tmp_path))
    _ok(acmekit(ca, *args, cwd=tmp_path))
    for n in ("0000", "0001"):
        cert = openssl_verify(ca.server.root_path, tmp_path / f"{n}_fullchain.pem", tmp_path)
        assert dns_names(cert) == ["csr.flags.test", "www.csr.flags.test"]
        assert cert.public_key() == key.public_key()  # the user's key, never seen by us
        assert _leaf(tmp_path / f"{n}_cert.pem") == cert
        assert (tmp_path / f"{n}_chain.pem").read_text().startswith("-----BEGIN CERTIFICATE")
    # No lineage: --csr leaves the config dir's certificates alone, as certbot does.
    assert not (ca.etc / "etc" / "renewal" / "csr.flags.test.conf").exists()


def test_csr_with_explicit_paths(ca: Ca, tmp_path: Path) -> None:
    key = _write_csr(tmp_path / "req.pem", "paths.flags.test")
    out = tmp_path / "out"
    out.mkdir()
    _ok(
        acmekit(
            ca, "certonly", "-n", "--server", ca.server.directory_url, *certbot_dirs(ca.etc),
            "--csr", str(tmp_path / "req.pem"), *standalone(ca),
            "--cert-path", str(out / "c.pem"), "--chain-path", str(out / "ch.pem"),
            "--fullchain-path", str(out / "fc.pem"),
        )
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["c.pem", "ch.pem", "fc.pem"]
    cert = openssl_verify(ca.server.root_path, out / "fc.pem", tmp_path)
    assert cert.public_key() == key.public_key()
    assert (out / "fc.pem").read_text() == (out / "c.pem").read_text() + (
        out / "ch.pem"
    ).read_text()


def test_csr_that_is_not_a_csr_is_one_line(ca: Ca, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a CSR\n")
    result = acmekit(ca, "certonly", "-n", "--server", ca.server.directory_url,
                     *certbot_dirs(ca.etc), "--csr", str(bad), *standalone(ca))  # fmt: skip
    _one_line_failure(result)


# -- identifiers and profiles ------------------------------------------------------------


def test_ip_address(ca: Ca) -> None:
    _ok(
        certonly(
            ca, *standalone(ca), "--ip-address", "127.0.0.1", "--required-profile", "shortlived"
        )
    )
    cert = _leaf(_live(ca, "127.0.0.1"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == []


def _lifetime(cert: x509.Certificate) -> timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def test_preferred_and_required_profile(ca: Ca) -> None:
    _ok(certonly(ca, *standalone(ca), "--preferred-profile", "shortlived", "-d", "pp.flags.test"))
    assert _lifetime(_leaf(_live(ca, "pp.flags.test"))) <= timedelta(hours=161)
    conf = (ca.etc / "etc" / "renewal" / "pp.flags.test.conf").read_text()
    assert "preferred_profile = shortlived" in conf

    _ok(certonly(ca, *standalone(ca), "--required-profile", "shortlived", "-d", "rp.flags.test"))
    assert _lifetime(_leaf(_live(ca, "rp.flags.test"))) <= timedelta(hours=161)

    # A preferred profile the CA does not offer: the CA's default, as certbot does.
    _ok(certonly(ca, *standalone(ca), "--preferred-profile", "nosuch", "-d", "np.flags.test"))
    assert _lifetime(_leaf(_live(ca, "np.flags.test"))) >= timedelta(days=80)
    # A required one: a one-line refusal.
    refused = certonly(ca, *standalone(ca), "--required-profile", "nosuch", "-d", "nr.flags.test")
    _one_line_failure(refused)
    assert "nosuch" in refused.stderr

    both = certonly(ca, *standalone(ca), "--preferred-profile", "a", "--required-profile", "b",
                    "-d", "both.flags.test")  # fmt: skip
    assert both.returncode == 2 and "Traceback" not in both.stderr


# -- interactive manual mode -----------------------------------------------------------


def _read_until(proc: subprocess.Popen[str], pattern: str, seen: list[str]) -> re.Match[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(pattern, "".join(seen))
        if found:
            return found
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096).decode()
            if not chunk:
                break
            seen.append(chunk)
    raise AssertionError(f"never saw {pattern!r} in:\n{''.join(seen)}")


def test_interactive_manual_dns01(ca: Ca, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "acmekit", "certonly", "--manual",
            "--preferred-challenges", "dns-01", "--agree-tos", "-m", "ops@flags.test",
            "--server", ca.server.directory_url, *certbot_dirs(ca.etc),
            "-d", "ask.flags.test"]  # fmt: skip
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(ca.server.root_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    try:
        seen: list[str] = []
        shown = _read_until(
            proc, r"under the name:\s+(\S+)\s+with the following value:\s+(\S+)\s", seen
        )
        _read_until(proc, "Press Enter", seen)
        record, value = shown.group(1), shown.group(2)
        assert record == "_acme-challenge.ask.flags.test."
        ca.dns.set_txt_sync(record, value)  # publish, then press Enter
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(seen) + out + err
    assert dns_names(_leaf(_live(ca, "ask.flags.test"))) == ["ask.flags.test"]


def test_manual_without_hook_when_non_interactive_is_one_line(ca: Ca) -> None:
    result = certonly(ca, "--manual", "--preferred-challenges", "dns-01", "-d", "nh.flags.test")
    _one_line_failure(result)


# -- keys ----------------------------------------------------------------------------------


def _archive(ca: Ca, name: str, kind: str, version: int) -> bytes:
    return (ca.etc / "etc" / "archive" / name / f"{kind}{version}.pem").read_bytes()


def test_reuse_key(ca: Ca) -> None:
    name = "reuse.flags.test"
    _ok(certonly(ca, *standalone(ca), "-d", name))
    _ok(certonly(ca, *standalone(ca), "-d", name, "--force-renewal", "--reuse-key"))
    assert _archive(ca, name, "privkey", 2) == _archive(ca, name, "privkey", 1)
    assert _leaf(_live(ca, name)).public_key() == _leaf(_live(ca, name)).public_key()
    assert "reuse_key = True" in (ca.etc / "etc" / "renewal" / f"{name}.conf").read_text()
    # `renew` follows the saved choice.
    renewed = acmekit(ca, "renew", "--force-renewal", "--no-random-sleep-on-renew",
                      "--cert-name", name, *certbot_dirs(ca.etc))  # fmt: skip
    _ok(renewed)
    assert _archive(ca, name, "privkey", 3) == _archive(ca, name, "privkey", 1)
    assert _archive(ca, name, "cert", 3) != _archive(ca, name, "cert", 2)
    # Without --reuse-key a forced renewal makes a new key.
    _ok(certonly(ca, *standalone(ca), "-d", name, "--force-renewal"))
    assert _archive(ca, name, "privkey", 4) != _archive(ca, name, "privkey", 1)


def test_rsa_3072(ca: Ca) -> None:
    name = "rsa.flags.test"
    _ok(certonly(ca, *standalone(ca), "-d", name, "--key-type", "rsa", "--rsa-key-size", "3072"))
    key = _leaf(_live(ca, name)).public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 3072
    private = serialization.load_pem_private_key(_live(ca, name, "privkey").read_bytes(), None)
    assert private.public_key() == key
    conf = (ca.etc / "etc" / "renewal" / f"{name}.conf").read_text()
    assert "key_type = rsa" in conf and "rsa_key_size = 3072" in conf


def test_elliptic_curve_secp384r1(ca: Ca) -> None:
    name = "p384.flags.test"
    _ok(certonly(ca, *standalone(ca), "-d", name, "--elliptic-curve", "secp384r1"))
    key = _leaf(_live(ca, name)).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    conf = (ca.etc / "etc" / "renewal" / f"{name}.conf").read_text()
    assert "elliptic_curve = secp384r1" in conf


# -- certificates --json --------------------------------------------------------------------

FIELDS = {
    "name": str, "domains": list, "serial": str, "key_type": str, "not_before": str,
    "not_after": str, "days_left": int, "valid": bool, "version": int, "cert_path": str,
    "fullchain_path": str, "privkey_path": str, "chain_path": str, "server": str,
    "authenticator": str,
    # Certificate Transparency: this CA logs nothing, and no --ct-log-list is given.
    "scts": list, "ct_policy": type(None),
}  # fmt: skip


def test_certificates_json_shape(ca: Ca, tmp_path: Path) -> None:
    base = tmp_path / "own"
    _ok(certonly(ca, *standalone(ca), "-d", "j1.flags.test", "-d", "www.j1.flags.test",
                 base=base))  # fmt: skip
    _ok(certonly(ca, *standalone(ca), "-d", "j2.flags.test", "--key-type", "rsa", base=base))
    _ok(certonly(ca, *standalone(ca), "-d", "j2.flags.test", "--key-type", "rsa",
                 "--force-renewal", base=base))  # fmt: skip
    (base / "etc" / "renewal" / "broken.conf").write_text("this is not a renewal conf\n")
    listed = acmekit(ca, "certificates", "--json", *certbot_dirs(base))
    _ok(listed)
    report = json.loads(listed.stdout)
    assert set(report) == {"certificates", "errors"}
    assert [e["name"] for e in report["errors"]] == ["broken"]
    assert set(report["errors"][0]) == {"name", "error"} and report["errors"][0]["error"]
    by_name = {c["name"]: c for c in report["certificates"]}
    assert sorted(by_name) == ["j1.flags.test", "j2.flags.test"]
    for entry in by_name.values():
        assert {k: type(v) for k, v in entry.items()} == FIELDS
        cert = _leaf(Path(entry["cert_path"]))
        assert entry["serial"] == f"{cert.serial_number:x}"
        assert entry["not_after"].startswith(cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M"))
        assert entry["server"] == ca.server.directory_url
        assert entry["authenticator"] == "standalone" and entry["valid"] is True
    assert by_name["j1.flags.test"]["domains"] == ["j1.flags.test", "www.j1.flags.test"]
    assert by_name["j1.flags.test"]["key_type"] == "ECDSA"
    assert by_name["j2.flags.test"]["key_type"] == "RSA"
    assert [by_name[n]["version"] for n in sorted(by_name)] == [1, 2]
    one = json.loads(acmekit(ca, "certificates", "--json", "--cert-name", "j2.flags.test",
                             *certbot_dirs(base)).stdout)  # fmt: skip
    assert [c["name"] for c in one["certificates"]] == ["j2.flags.test"]

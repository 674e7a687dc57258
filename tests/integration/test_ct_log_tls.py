"""`acmekit ct --tls-cert --tls-key`: the log served over HTTPS on loopback. Real
clients reach it with the CA bundle that its certificate chains to (curl, the standard
library's TLS, and the CA's own submitter reading the log list the log wrote), and
refuse it without. Its listener (`acmekit.http1`, the CA's) counts a connection before TLS
and bounds the handshake."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from acmekit.http1 import ListenerLimits
from acmekit.protocol import ct
from acmekit.server.ca import Issuer
from acmekit.server.config import CtSettings
from acmekit.server.ctsubmit import CtSubmitter, CtUnavailable
from acmekit_testkit.ctlog import (
    RunningLog,
    ca_hierarchy,
    chain_json,
    leaf_certificate,
    running_ct_log,
)


@dataclass(frozen=True)
class TlsLog:
    running: RunningLog
    issuer: Issuer
    bundle: Path  # the root the log's certificate chains to


def listener_files(issuer: Issuer, directory: Path) -> tuple[Path, Path]:
    """A serverAuth certificate for 127.0.0.1 from the hierarchy's intermediate, as a
    chain file (certificate, intermediate) and a key file."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.intermediate_cert.subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    signer = issuer.intermediate_key
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    signed = cert.sign(signer, hashes.SHA256())
    chain, key_file = directory / "log-tls.pem", directory / "log-tls.key"
    pem = serialization.Encoding.PEM
    chain.write_bytes(signed.public_bytes(pem) + issuer.intermediate_cert.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return chain, key_file


@pytest.fixture(scope="module")
def tls_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsLog]:
    base = tmp_path_factory.mktemp("ct-tls")
    issuer = ca_hierarchy(base / "ca")
    chain, key = listener_files(issuer, base)
    extra = ["--tls-cert", str(chain), "--tls-key", str(key)]
    with running_ct_log(base / "log", base / "ca" / "root.pem", extra=extra) as running:
        yield TlsLog(running, issuer, base / "ca" / "root.pem")


def test_the_log_announces_and_lists_an_https_url(tls_log: TlsLog) -> None:
    assert tls_log.running.url.startswith("https://127.0.0.1:")
    (info,) = ct.LogList.loads(tls_log.running.log_list.read_text()).logs
    assert info.url == tls_log.running.url


def test_curl_and_the_standard_library_reach_it_with_the_bundle(tls_log: TlsLog) -> None:
    url = tls_log.running.url
    (info,) = ct.LogList.loads(tls_log.running.log_list.read_text()).logs
    got = subprocess.run(
        ["curl", "-sS", "--fail", "--noproxy", "*", "--cacert", str(tls_log.bundle),
         url + "ct/v1/get-sth"],
        capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    assert ct.SignedTreeHead.from_json(json.loads(got.stdout)).verify(info.key)
    # without the bundle the handshake fails: the certificate is verified
    refused = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", url + "ct/v1/get-sth"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 60, refused.stderr  # peer certificate cannot be verified

    context = ssl.create_default_context(cafile=str(tls_log.bundle))
    inter = tls_log.issuer.intermediate_cert
    precert = leaf_certificate(tls_log.issuer, "tls.example", precert=True)
    req = urllib.request.Request(
        url + "ct/v1/add-pre-chain",
        data=json.dumps(chain_json([precert, inter])).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:
        sct = ct.SignedCertificateTimestamp.from_json(json.loads(resp.read()))
    entry = ct.SignedEntry.precert(ct.precert_entry(precert, inter))
    assert ct.verify_sct(sct, entry, info.key)
    with urllib.request.urlopen(url + "checkpoint", timeout=10, context=context) as resp:
        origin = resp.read().decode().split("\n", 1)[0]
    assert origin == url.removeprefix("https://").rstrip("/")


def test_the_cas_submitter_logs_to_an_https_log_from_its_log_list(tls_log: TlsLog) -> None:
    inter, root = tls_log.issuer.intermediate_cert, tls_log.issuer.root_cert
    lists = (str(tls_log.running.log_list),)
    (info,) = ct.LogList.loads(tls_log.running.log_list.read_text()).logs

    logs = ct.LogList.loads(tls_log.running.log_list.read_text()).logs

    async def scts(settings: CtSettings, name: str) -> list[ct.SignedCertificateTimestamp]:
        submitter = CtSubmitter(settings, logs)
        try:
            precert = leaf_certificate(tls_log.issuer, name, precert=True)
            return await submitter.scts_for(precert, [inter, root])
        finally:
            await submitter.close()

    trusted = CtSettings(
        log_lists=lists, required_scts=1, timeout=10, ca_bundle=str(tls_log.bundle)
    )
    (sct,) = asyncio.run(scts(trusted, "ca-tls.example"))
    assert sct.log_id == info.log_id
    assert ct.leaf_index_of(sct.extensions) is not None
    untrusted = CtSettings(log_lists=lists, required_scts=1, timeout=10)
    with pytest.raises(CtUnavailable, match="certificate verify failed"):
        asyncio.run(scts(untrusted, "ca-untrusted.example"))


def test_half_a_tls_pair_or_a_bad_one_stops_the_start(tmp_path: Path) -> None:
    issuer = ca_hierarchy(tmp_path / "ca")
    chain, _ = listener_files(issuer, tmp_path)
    base = [sys.executable, "-m", "acmekit", "ct", "--listen", "127.0.0.1:0"]
    base += ["--state-dir", str(tmp_path / "log"), "--roots", str(tmp_path / "ca" / "root.pem")]
    half = subprocess.run([*base, "--tls-cert", str(chain)], capture_output=True, timeout=60)
    assert half.returncode == 2
    assert b"--tls-cert and --tls-key go together" in half.stderr
    # the key of another certificate: refused before anything listens
    other = tmp_path / "other.key"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    bad = subprocess.run(
        [*base, "--tls-cert", str(chain), "--tls-key", str(other)], capture_output=True, timeout=60
    )
    assert bad.returncode == 1
    assert b"not a TLS certificate and its key" in bad.stderr


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_silent_connections_count_before_tls_and_their_handshakes_are_cut_off(
    tls_log: TlsLog,
) -> None:
    """Connections that never start a handshake count against their address at accept
    (the default bounds: 256 a client, 10 s a handshake): past twice the cap one is
    closed before any TLS, and the silent ones are closed when their handshake's time is
    up, not after asyncio's 60 s. Last in this module: it fills the log's places."""
    url = urlsplit(tls_log.running.url)
    where = (url.hostname or "", url.port or 443)
    limits = ListenerLimits()
    context = ssl.create_default_context(cafile=str(tls_log.bundle))

    def get_sth() -> int:
        with urllib.request.urlopen(
            url.geturl() + "ct/v1/get-sth", timeout=10, context=context
        ) as resp:
            return int(resp.status)

    silent = [
        socket.create_connection(where, timeout=limits.handshake_timeout + 20)
        for _ in range(2 * limits.max_connections_per_address)
    ]
    try:
        with pytest.raises(OSError), socket.create_connection(where, timeout=10) as raw:
            context.wrap_socket(raw, server_hostname=url.hostname).close()
        assert all(_closed_by_server(sock) for sock in silent)
    finally:
        for sock in silent:
            sock.close()
    for _ in range(50):  # the server sees its own closes a moment later
        try:
            if get_sth() == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        pytest.fail("places held by unfinished handshakes were not freed")

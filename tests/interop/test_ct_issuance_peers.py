"""Debian's certbot and lego against `acmekit server` with three `acmekit ct` logs (real
processes on loopback): the certificates carry SCTs that OpenSSL shows and `acmekit
certificates` verifies; with one log stopped the CA still gets its SCTs from the others,
and with two stopped it fails the order cleanly, naming the logs; certspotter, following
the log that stayed up, finds the certificates."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from acmekit.protocol.ctpolicy import embedded_scts
from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.cli import certbot_dirs, run_trusting
from acmekit_testkit.ctlog import RunningLog, ca_hierarchy, running_ct_log
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import log_tail, logged_process, wait_ready, wait_until

pytestmark = pytest.mark.interop
CERTBOT = "/usr/bin/certbot"
LEGO = "/usr/bin/lego"


@dataclass
class LoggedCa:
    server: ServerHandle
    logs: list[RunningLog]
    http01_port: int

    def stop_log(self, index: int) -> None:
        proc = self.logs[index].process
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def logged_ca(
    tmp_path_factory: pytest.TempPathFactory, interop_dns: DnsServerHandle
) -> Iterator[LoggedCa]:
    work = tmp_path_factory.mktemp("ct-ca")
    state = work / "ca-state"
    ca_hierarchy(state)  # the logs accept the CA's root, so it exists before them
    with ExitStack() as stack:
        logs = [
            stack.enter_context(running_ct_log(work / f"log{i}", state / "root.pem"))
            for i in range(3)
        ]
        http01 = free_port()
        server = stack.enter_context(
            running_acmekit_server(
                work,
                dns_port=interop_dns.dns_port,
                http01_port=http01,
                state_dir=state,
                settings={"ct": {"log_lists": [str(log.log_list) for log in logs], "timeout": 5}},
            )
        )
        yield LoggedCa(server, logs, http01)


def _certbot(ca: LoggedCa, tmp: Path, name: str) -> subprocess.CompletedProcess[str]:
    return run_trusting(
        [CERTBOT, "certonly", "--non-interactive", "--agree-tos", "-m", "ops@interop.test",
         "--server", ca.server.directory_url, *certbot_dirs(tmp), "--key-type", "ecdsa",
         "--standalone", "--http-01-port", str(ca.http01_port),
         "--http-01-address", "127.0.0.1", "-d", name],
        ca.server.root_path,
    )  # fmt: skip


def _lego(ca: LoggedCa, tmp: Path, name: str) -> subprocess.CompletedProcess[str]:
    argv = [
        LEGO, "--server", ca.server.directory_url, "--accept-tos", "--email", "ops@interop.test",
        "--path", str(tmp / "lego"), "--key-type", "ec256", f"--domains={name}",
        "--http", "--http.port", f"127.0.0.1:{ca.http01_port}", "run",
    ]  # fmt: skip
    env = {**os.environ, "LEGO_CA_CERTIFICATES": str(ca.server.root_path)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180)


def _log_list_flags(logs: list[RunningLog]) -> list[str]:
    return [f for log in logs for f in ("--ct-log-list", str(log.log_list))]


def test_certbot_then_lego_with_a_log_down_then_too_few(
    logged_ca: LoggedCa, tmp_path: Path
) -> None:
    # All three logs up: certbot's certificate carries three SCTs, as OpenSSL shows.
    made = _certbot(logged_ca, tmp_path / "certbot", "ct.certbot.test")
    assert made.returncode == 0, made.stderr[-3000:]
    cert_pem = tmp_path / "certbot" / "etc" / "live" / "ct.certbot.test" / "cert.pem"
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(cert_pem)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "CT Precertificate SCTs" in text
    assert text.count("Signed Certificate Timestamp:") == 3
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    assert {s.log_id for s in embedded_scts(cert)} == {
        base64.b64decode(log.log_id) for log in logged_ca.logs
    }
    listed = subprocess.run(
        [sys.executable, "-m", "acmekit", "certificates", *certbot_dirs(tmp_path / "certbot"),
         *_log_list_flags(logged_ca.logs)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(": signature ok") == 3, listed.stdout
    assert "CT policy: compliant" in listed.stdout
    _check_served(logged_ca, tmp_path, cert_pem.parent)

    # One log stopped: lego still gets a certificate, with the other two logs' SCTs.
    logged_ca.stop_log(0)
    got = _lego(logged_ca, tmp_path, "ct.lego.test")
    assert got.returncode == 0, got.stderr[-3000:]
    crt = tmp_path / "lego" / "certificates" / "ct.lego.test.crt"
    leaf = x509.load_pem_x509_certificates(crt.read_bytes())[0]

    assert {s.log_id for s in embedded_scts(leaf)} == {
        base64.b64decode(log.log_id) for log in logged_ca.logs[1:]
    }

    # Two stopped: one SCT is too few; the order fails and says which logs failed.
    logged_ca.stop_log(1)
    refused = _certbot(logged_ca, tmp_path / "refused", "refused.certbot.test")
    assert refused.returncode != 0
    # certbot prints "IssuanceError"; the order's problem is in its log.
    said = (tmp_path / "refused" / "logs" / "letsencrypt.log").read_text()
    assert "could not get enough SCTs" in said, said[-3000:]
    assert logged_ca.logs[0].url in said and logged_ca.logs[1].url in said

    # certspotter follows the log that stayed up and finds what certbot and lego got.
    _certspotter_finds(logged_ca.logs[2], tmp_path, ["ct.certbot.test", "ct.lego.test"])


def _tree_size(log: RunningLog) -> int:
    with urllib.request.urlopen(log.url + "ct/v1/get-sth", timeout=10) as resp:
        return int(json.loads(resp.read())["tree_size"])


def _certspotter_finds(log: RunningLog, tmp: Path, names: list[str]) -> None:
    # Sequenced: two precertificates and two certificates (add-chain), the refused
    # order's precertificate.
    wait_until("5 entries sequenced", lambda: _tree_size(log) == 5, 30, [log.output])
    watch = tmp / "watchlist"
    watch.write_text("".join(f"{n}\n" for n in names))
    state, out = tmp / "certspotter", tmp / "certspotter.log"
    argv = [
        "certspotter", "-logs", str(log.log_list), "-watchlist", str(watch),
        "-state_dir", str(state), "-stdout", "-no_save", "-verbose",
    ]  # fmt: skip
    env = {"HOME": str(tmp / "home"), "CERTSPOTTER_CONFIG_DIR": str(tmp / "conf")}
    with logged_process(argv, out, env=env):
        wait_until(
            "certspotter reports both names",
            lambda: all(f"DNS Name = {n}" in log_tail(out, 200_000) for n in names),
            60,
            [out, log.output],
        )


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _check_served(ca: LoggedCa, tmp: Path, live: Path) -> None:
    """`acmekit check` of the certificate as a TLS server (OpenSSL's) presents it: the
    SCTs verify against the log lists, the issuer taken from the chain the server sends
    (the bundle holds the root alone, as a user's does)."""
    port = free_port()
    bundle = ca.server.root_path
    argv = [
        "openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}",
        "-cert", str(live / "cert.pem"), "-cert_chain", str(live / "chain.pem"),
        "-key", str(live / "privkey.pem"), "-www",
    ]  # fmt: skip
    log = tmp / "s_server.log"
    with logged_process(argv, log) as proc:
        wait_ready(proc, lambda: _connects(port), log, "openssl s_server")
        checked = subprocess.run(
            [sys.executable, "-m", "acmekit", "check", f"127.0.0.1:{port}",
             "--servername", "ct.certbot.test", "--ca-bundle", str(bundle),
             *_log_list_flags(ca.logs)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SCTs: 3" in checked.stdout
    assert checked.stdout.count(": signature ok") == 3, checked.stdout
    assert "CT policy: compliant" in checked.stdout

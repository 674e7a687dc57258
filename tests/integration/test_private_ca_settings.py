"""A private CA's operator settings against `acmekit server` as a process on loopback: a
profile of its own starts from `classic` (IP identifiers refused), the directory describes
`classic` as configured, and settings that would fail every issuance stop the start."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from acmekit.server.keycheck import spki_sha256
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme, new_key
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.ports import free_port

CORP = {
    "default_profile": "corp",
    "certificate_lifetime": 30 * 86400,
    "profiles.corp": {"description": "internal services, 14 days", "certificate_lifetime": 1209600},
}


def _directory(url: str, root: Path) -> dict[str, object]:
    context = ssl.create_default_context(cafile=str(root))
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        directory: dict[str, object] = json.load(resp)
    return directory


def test_a_profile_of_its_own_refuses_ip_identifiers_as_classic_does(tmp_path: Path) -> None:
    with (
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(tmp_path, dns_port=dns.dns_port, settings=CORP) as ca,
    ):
        meta = _directory(ca.directory_url, ca.root_path)["meta"]
        assert isinstance(meta, dict)
        profiles = meta["profiles"]
        # classic is not the default here, and its lifetime is the configured 30 days.
        assert profiles["classic"] == "Certificates valid for 30 days for DNS names"
        assert profiles["corp"] == "internal services, 14 days"
        result = run_acmekit(
            ca.root_path, "certonly", "-n", "--agree-tos", "-m", "ops@corp.test",
            "--server", ca.directory_url, *certbot_dirs(tmp_path / "client"),
            "--standalone", "--http-01-port", str(free_port()),
            "--ip-address", "127.0.0.1",
        )  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "rejectedIdentifier" in result.stderr, result.stderr
    assert "profile 'corp' does not allow IP address identifiers" in result.stderr


def test_a_classic_table_keeps_the_top_level_lifetime_it_does_not_set(tmp_path: Path) -> None:
    http01 = free_port()
    settings = {
        "certificate_lifetime": 30 * 86400,
        "profiles.classic": {"authz_reuse": 3600},  # changes one field, not the lifetime
    }
    with (
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(
            tmp_path, dns_port=dns.dns_port, http01_port=http01, settings=settings
        ) as ca,
    ):
        meta = _directory(ca.directory_url, ca.root_path)["meta"]
        assert isinstance(meta, dict)
        described = meta["profiles"]["classic"]
        assert described == "Certificates valid for 30 days for DNS names (the default)"
        result = run_acmekit(
            ca.root_path, "certonly", "-n", "--agree-tos", "-m", "ops@corp.test",
            "--server", ca.directory_url, *certbot_dirs(tmp_path / "client"),
            "--standalone", "--http-01-port", str(http01), "--http-01-address", "127.0.0.1",
            "-d", "app.corp.test",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    live = tmp_path / "client" / "etc" / "live" / "app.corp.test" / "cert.pem"
    leaf = x509.load_pem_x509_certificate(live.read_bytes())
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=30)


def test_a_refusal_states_the_limit_as_it_was_set(tmp_path: Path) -> None:
    settings = {"rate_limits.failed_validations": {"count": 1, "period": 3600}}
    listening = free_port()  # the client answers here; the CA looks at a port with nothing
    with (
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(
            tmp_path, dns_port=dns.dns_port, http01_port=free_port(), settings=settings
        ) as ca,
    ):
        details = []
        for _ in range(2):
            result = run_acmekit(
                ca.root_path, "certonly", "-n", "--agree-tos", "-m", "ops@corp.test",
                "--server", ca.directory_url, *certbot_dirs(tmp_path / "client"),
                "--standalone", "--http-01-port", str(listening),
                "--http-01-address", "127.0.0.1", "-d", "down.corp.test",
            )  # fmt: skip
            assert result.returncode != 0
            details.append(result.stderr.strip())
    assert "connection" in details[0], details
    assert "rateLimited" in details[1] and "(failed_validations: 1 per hour)" in details[1]


def test_the_crl_address_the_banner_prints_lists_every_shard(tmp_path: Path) -> None:
    crl_listen = f"127.0.0.1:{free_port()}"
    settings = {"crl": {"listen": crl_listen, "shards": 3}}
    with (
        dns_server_process(tmp_path) as dns,
        running_acmekit_server(tmp_path, dns_port=dns.dns_port, settings=settings) as ca,
    ):
        banner = [line for line in ca.log.read_text().splitlines() if line.startswith("crl: ")]
        assert banner == [f"crl: http://{crl_listen}/crl/"]
        with urllib.request.urlopen(banner[0].removeprefix("crl: "), timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
            urls = resp.read().decode().splitlines()
        assert urls == [f"http://{crl_listen}/crl/{shard}.crl" for shard in range(3)]
        for url in urls:
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.headers["Content-Type"] == "application/pkix-crl"
                crl = x509.load_der_x509_crl(resp.read())
            assert len(list(crl)) == 0


async def test_a_key_the_operator_blocked_is_refused_as_such(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    key = new_key()
    settings = {"keys": {"blocked": [spki_sha256(key.public_key()).upper()]}}
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, settings=settings
    ) as ca:
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        try:
            refused = await Flow(acme, responder, key).account()
        finally:
            await acme.close()
    assert (refused.status, refused.problem_type) == (400, "badPublicKey")
    detail = refused.json()["detail"]
    assert detail == "account key is blocked: the CA's configuration blocks it ([keys] blocked)"


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[crl]\nshards = 0\n", "crl.shards = 0"),
        ("[profiles.corp]\ncertificate_lifetime = -5\n", "profiles.corp.certificate_lifetime"),
        ("certificate_lifetime = 0\n", "certificate_lifetime must be more than 0"),
        ("[profiles.classic]\norder_lifetime = 0\n", "profiles.classic.order_lifetime"),
        (
            '[rate_limits.new_orders_per_account]\noverrides = { "x" = "y" }\n',
            """new_orders_per_account.overrides: "x" = 'y' must be a whole number""",
        ),
        (
            "[rate_limits.duplicate_certificates]\noverrides = 5\n",
            "duplicate_certificates.overrides must be a table",
        ),
        # Each of these was taken and then refused every client: max_identifiers = 0
        # every order and (the cap on an account's validations at once) every challenge;
        # a negative [limits] bound is not off (0 is) but always passed, so
        # header_timeout = -1 closed every connection and max_body_bytes = -1 answered
        # every request 413; validation_timeout = 0 failed every validation.
        ("max_identifiers = 0\n", "max_identifiers = 0"),
        ("validation_timeout = 0\n", "validation_timeout must be more than 0"),
        ("[limits]\nheader_timeout = -1\n", "limits.header_timeout must be 0 or more"),
        ("[limits]\nmax_body_bytes = -1\n", "limits.max_body_bytes must be 0 or more"),
        # the top-level setting is named, not the [profiles.classic] table beside it
        (
            'certificate_lifetime = 0\n[profiles.classic]\ndescription = "ours"\n',
            "acmekit: certificate_lifetime must be more than 0",
        ),
    ],
)
def test_settings_that_would_fail_every_issuance_stop_the_start(
    toml: str, named: str, tmp_path: Path
) -> None:
    (tmp_path / "ca.toml").write_text(toml)
    result = subprocess.run(
        [sys.executable, "-m", "acmekit", "server", "--config", "ca.toml", "--state-dir", "st",
         "--listen", f"127.0.0.1:{free_port()}", "--crl-listen", ""],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("acmekit: ") and named in lines[0], lines[0]
    assert not (tmp_path / "st").exists()  # refused before anything was made

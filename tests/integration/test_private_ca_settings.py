"""A private CA's operator settings against `acmekit server` as a process on loopback: a
profile of its own starts from `classic` (IP identifiers refused), the directory describes
`classic` as configured."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.dnsserver import dns_server_process
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

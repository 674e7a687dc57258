"""`ca_name` names the hierarchy the CA makes on first start: a private CA's root and
intermediate carry the operator's organization, not "acmekit". A kept hierarchy keeps
its name, and the CA says so when the setting disagrees. A name that cannot fit an
X.509 name stops the start in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle

NAME = "Example Private CA"


def _names(cert: x509.Certificate) -> tuple[str, str]:
    def one(oid: x509.ObjectIdentifier) -> str:
        return str(cert.subject.get_attributes_for_oid(oid)[0].value)

    return one(NameOID.ORGANIZATION_NAME), one(NameOID.COMMON_NAME)


def test_the_first_start_names_the_hierarchy_and_a_restart_keeps_it(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
    state = tmp_path / "state"
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, state_dir=state, settings={"ca_name": NAME}
    ) as ca:
        root = x509.load_pem_x509_certificate(ca.root_path.read_bytes())
    intermediate = x509.load_pem_x509_certificate((state / "intermediate.pem").read_bytes())
    assert _names(root) == (NAME, f"{NAME} root")
    assert _names(intermediate) == (NAME, f"{NAME} intermediate")
    assert intermediate.issuer == root.subject

    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, state_dir=state, settings={"ca_name": "Other"}
    ) as again:
        kept = x509.load_pem_x509_certificate(again.root_path.read_bytes())
        log = again.log.read_text()
    assert kept == root
    assert f"the stored root is named '{NAME}', not 'Other'" in log


@pytest.mark.parametrize("name", ["x" * 52, " Example", "Example ", "", "a\\tb"])
def test_a_name_that_cannot_stand_in_a_certificate_stops_the_start(
    tmp_path: Path, name: str
) -> None:
    config = tmp_path / "ca.toml"
    config.write_text(f'ca_name = "{name}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "acmekit", "server", "--config", str(config),
         "--state-dir", str(tmp_path / "state"), "--listen", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "ca_name must be 1 to 51 printable characters" in done.stderr, done.stderr
    assert not (tmp_path / "state" / "root.pem").exists()

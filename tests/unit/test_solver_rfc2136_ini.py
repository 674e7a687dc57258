"""certbot-dns-rfc2136 credentials files read by Rfc2136DnsProvider.from_certbot_ini."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import dns.tsig
import pytest

from acmekit.client.solvers.rfc2136 import CredentialsError, Rfc2136DnsProvider
from acmekit.tsig import algorithm

SECRET = base64.b64encode(b"a credentials test secret, 32 o!").decode()
GOOD = f"""\
# certbot credentials
dns_rfc2136_server = 127.0.0.1
dns_rfc2136_port = 5353
dns_rfc2136_name = update-key.
dns_rfc2136_secret = {SECRET}
dns_rfc2136_algorithm = HMAC-SHA512
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "rfc2136.ini"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_good_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        provider = Rfc2136DnsProvider.from_certbot_ini(write(tmp_path, GOOD))
    assert (provider.server, provider.port) == ("127.0.0.1", 5353)
    assert provider.key.name.to_text() == "update-key."
    assert provider.key.algorithm == dns.tsig.HMAC_SHA512
    assert provider.key.secret == base64.b64decode(SECRET)
    assert provider.sign_query is False
    assert "Unsafe permissions" not in caplog.text


def test_defaults_are_certbots(tmp_path: Path) -> None:
    text = "\n".join(
        line for line in GOOD.splitlines() if "port" not in line and "algo" not in line
    )
    provider = Rfc2136DnsProvider.from_certbot_ini(write(tmp_path, text + "\n"))
    assert provider.port == 53
    assert provider.key.algorithm == dns.tsig.HMAC_MD5


def test_sign_query_flag(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "dns_rfc2136_sign_query = True\n")
    assert Rfc2136DnsProvider.from_certbot_ini(path).sign_query is True


def test_group_readable_file_is_read_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        provider = Rfc2136DnsProvider.from_certbot_ini(write(tmp_path, GOOD, 0o644))
    assert provider.server == "127.0.0.1"
    assert "Unsafe permissions on credentials configuration file" in caplog.text
    assert SECRET not in caplog.text


def test_missing_fields_are_all_named(tmp_path: Path) -> None:
    path = write(tmp_path, "dns_rfc2136_server = 127.0.0.1\n")
    with pytest.raises(CredentialsError) as info:
        Rfc2136DnsProvider.from_certbot_ini(path)
    assert "dns_rfc2136_name" in str(info.value)
    assert "dns_rfc2136_secret" in str(info.value)
    assert "dns_rfc2136_server" not in str(info.value)


def test_bad_algorithm(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("HMAC-SHA512", "HMAC-SHA3"))
    with pytest.raises(CredentialsError, match="unknown TSIG algorithm 'HMAC-SHA3'"):
        Rfc2136DnsProvider.from_certbot_ini(path)


def test_host_name_server_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("127.0.0.1", "ns1.x.test"))
    with pytest.raises(CredentialsError, match="not an IP address"):
        Rfc2136DnsProvider.from_certbot_ini(path)


def test_bad_secret_and_port(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="not base64"):
        Rfc2136DnsProvider.from_certbot_ini(write(tmp_path, GOOD.replace(SECRET, "!!!")))
    with pytest.raises(CredentialsError, match="port"):
        Rfc2136DnsProvider.from_certbot_ini(write(tmp_path, GOOD.replace("5353", "five")))


@pytest.mark.parametrize("name", ["hmac-sha256", "HMAC-SHA256", "hmac-sha256.", " Hmac-Sha256 "])
def test_algorithm_names_are_case_insensitive(name: str) -> None:
    assert algorithm(name) == dns.tsig.HMAC_SHA256

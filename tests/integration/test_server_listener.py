"""The CA's HTTPS listener as the internet meets it: real requests to `acmekit server` on
loopback, with Host headers that are not its names."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from support.acmekit_server import ServerHandle, running_acmekit_server
from support.dnsserver import DnsServerHandle


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle) -> Iterator[ServerHandle]:
    with running_acmekit_server(tmp_path_factory.mktemp("ca"), dns_port=dns.dns_port) as server:
        yield server


def _get(ca: ServerHandle, path: str, host: str | None) -> http.client.HTTPResponse:
    url = urlsplit(ca.directory_url)
    context = ssl.create_default_context(cafile=str(ca.root_path))
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=context, timeout=10)
    conn.putrequest("GET", path, skip_host=True)
    if host is not None:
        conn.putheader("Host", host)
    conn.endheaders()
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def _directory(ca: ServerHandle, host: str) -> tuple[int, dict[str, object], str]:
    url = urlsplit(ca.directory_url)
    context = ssl.create_default_context(cafile=str(ca.root_path))
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=context, timeout=10)
    conn.request("GET", "/directory", headers={"Host": host})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    return resp.status, doc, resp.getheader("link") or ""


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LOCALHOST"])
def test_the_listeners_names_are_served(ca: ServerHandle, name: str) -> None:
    port = urlsplit(ca.directory_url).port
    status, doc, _ = _directory(ca, f"{name}:{port}")
    assert status == 200
    assert doc["newNonce"] == f"https://{name}:{port}/acme/new-nonce"


@pytest.mark.parametrize(
    "host",
    ["attacker.test", "attacker.test:{port}", "127.0.0.2:{port}", "127.0.0.1:1", "127.0.0.1"],
)
def test_another_host_is_misdirected(ca: ServerHandle, host: str) -> None:
    port = urlsplit(ca.directory_url).port
    status, doc, link = _directory(ca, host.format(port=port))
    assert status == 421
    assert doc["type"] == "urn:ietf:params:acme:error:malformed"
    assert "is not a name of this server" in doc["detail"]
    assert link == f'<{ca.base_url}/directory>;rel="index"'


def test_a_request_without_host_is_misdirected(ca: ServerHandle) -> None:
    assert _get(ca, "/directory", None).status == 421

"""The client's RFC 2136 provider (what the dns-01 solver publishes with) against
`acmekit dns`: the zone found by SOA, TXT values added and deleted one at a time, and
a wrong key or a name outside every zone refused."""

from __future__ import annotations

import base64

import dns.asyncquery
import dns.message
import pytest

from acmekit.client.solvers.errors import DnsUpdateError
from acmekit.client.solvers.rfc2136 import Rfc2136DnsProvider
from acmekit.dns.store import txt_value
from acmekit_testkit.dnsserver import running_dns_server

SECRET = base64.b64encode(b"rfc2136 updater secret, 32 bytes").decode()
KEY = f"hmac-sha256:solver-key:{SECRET}"
NAME = "_acme-challenge.www.x.test."


async def txt_at(port: int, name: str = NAME) -> list[str]:
    q = dns.message.make_query(name, "TXT")
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)
    return sorted(txt_value(rd) for rd in reply.answer[0]) if reply.answer else []


def provider(port: int, secret: str = SECRET) -> Rfc2136DnsProvider:
    return Rfc2136DnsProvider("127.0.0.1", port, "solver-key", secret, "hmac-sha256")


async def test_provider_finds_the_zone_and_adds_then_deletes() -> None:
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        updater = provider(server.dns_port)
        assert await updater.zone_for(NAME) == "x.test."
        await updater.add_txt(NAME, "apex")
        await updater.add_txt(NAME, "wildcard")
        assert await txt_at(server.dns_port) == ["apex", "wildcard"]
        await updater.remove_txt(NAME, "apex")
        assert await txt_at(server.dns_port) == ["wildcard"]


async def test_provider_with_a_wrong_key_is_refused() -> None:
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        updater = provider(server.dns_port, base64.b64encode(b"w" * 32).decode())
        with pytest.raises(DnsUpdateError):
            await updater.add_txt(NAME, "nope")
        assert await txt_at(server.dns_port) == []


async def test_provider_without_a_zone_raises() -> None:
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        with pytest.raises(DnsUpdateError, match="cannot find the zone"):
            await provider(server.dns_port).add_txt("_acme-challenge.elsewhere.example.", "v")

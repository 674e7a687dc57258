"""The RFC 2136 updater (what dns-01 solvers use) against `acmekit dns` and BIND 9."""

from __future__ import annotations

import base64

import dns.asyncquery
import dns.message
import dns.name
import pytest

from acmekit.dns.rfc2136 import Rfc2136Updater
from acmekit.dns.store import txt_value
from acmekit.dns.tsig import parse_key
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit_testkit.dnsserver import running_dns_server

SECRET = base64.b64encode(b"rfc2136 updater secret, 32 bytes").decode()
KEY = f"hmac-sha256:solver-key:{SECRET}"
NAME = "_acme-challenge.www.x.test."


async def txt_at(port: int, name: str = NAME) -> list[str]:
    q = dns.message.make_query(name, "TXT")
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)
    return sorted(txt_value(rd) for rd in reply.answer[0]) if reply.answer else []


async def test_updater_finds_the_zone_and_adds_then_deletes() -> None:
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        updater = Rfc2136Updater("127.0.0.1", server.dns_port, parse_key(KEY))
        assert await updater.find_zone(NAME) == dns.name.from_text("x.test.")
        await updater.add_txt(NAME, "apex")
        await updater.add_txt(NAME, "wildcard")
        assert await txt_at(server.dns_port) == ["apex", "wildcard"]
        await updater.delete_txt(NAME, "apex")
        assert await txt_at(server.dns_port) == ["wildcard"]


async def test_updater_with_a_wrong_key_raises_a_dns_problem() -> None:
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        wrong = parse_key(f"solver-key:{base64.b64encode(b'w' * 32).decode()}")
        updater = Rfc2136Updater("127.0.0.1", server.dns_port, wrong)
        with pytest.raises(AcmeError) as info:
            await updater.add_txt(NAME, "nope")
        assert info.value.problem.type == ProblemType.DNS
        assert await txt_at(server.dns_port) == []


async def test_updater_without_a_zone_raises() -> None:
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        updater = Rfc2136Updater("127.0.0.1", server.dns_port, parse_key(KEY))
        with pytest.raises(AcmeError):
            await updater.add_txt("_acme-challenge.elsewhere.example.", "v")

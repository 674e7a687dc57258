"""RFC 2136 UPDATE with TSIG from BIND's nsupdate against `acmekit dns`."""

from __future__ import annotations

import asyncio
import base64

import dns.asyncquery
import dns.message
import dns.rcode

from acmekit.dns.store import txt_value
from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server

SECRET = base64.b64encode(b"nsupdate test secret, 32 octets!").decode()
KEY = f"hmac-sha256:acme-update:{SECRET}"
NAME = "_acme-challenge.www.x.test."


async def nsupdate(server: DnsServerHandle, script: str, *key: str) -> tuple[int, str]:
    commands = f"server {server.host} {server.dns_port}\nzone x.test.\n{script}\nsend\n"
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/nsupdate", "-t", "5", *key,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate(commands.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def txt_values(server: DnsServerHandle) -> list[str]:
    q = dns.message.make_query(NAME, "TXT")
    reply = await dns.asyncquery.udp(q, server.host, port=server.dns_port, timeout=5)
    return sorted(txt_value(rd) for rd in reply.answer[0]) if reply.answer else []


async def test_nsupdate_adds_and_deletes_txt_with_tsig() -> None:
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        add = f'update add {NAME} 60 TXT "first"\nupdate add {NAME} 60 TXT "second"'
        code, out = await nsupdate(server, add, "-y", KEY)
        assert code == 0, out
        assert await txt_values(server) == ["first", "second"]
        code, out = await nsupdate(server, f'update delete {NAME} TXT "first"', "-y", KEY)
        assert code == 0, out
        assert await txt_values(server) == ["second"]
        code, out = await nsupdate(server, f"update delete {NAME} TXT", "-y", KEY)
        assert code == 0, out
        assert await txt_values(server) == []


async def test_nsupdate_with_a_wrong_secret_is_refused() -> None:
    wrong = "hmac-sha256:acme-update:" + base64.b64encode(b"x" * 32).decode()
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        code, out = await nsupdate(server, f'update add {NAME} 60 TXT "bad"', "-y", wrong)
        assert code != 0 and "NOTAUTH(BADSIG)" in out
        assert await txt_values(server) == []


async def test_nsupdate_with_an_unknown_key_is_refused() -> None:
    other = f"hmac-sha256:someone-else:{SECRET}"
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        code, out = await nsupdate(server, f'update add {NAME} 60 TXT "bad"', "-y", other)
        assert code != 0 and "NOTAUTH(BADKEY)" in out
        assert await txt_values(server) == []


async def test_unsigned_nsupdate_is_refused() -> None:
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        code, out = await nsupdate(server, f'update add {NAME} 60 TXT "bad"')
        assert code != 0 and "REFUSED" in out
        assert await txt_values(server) == []


async def test_nsupdate_cannot_add_other_types() -> None:
    async with running_dns_server(zones=("x.test",), tsig_keys=(KEY,)) as server:
        code, out = await nsupdate(server, "update add evil.x.test. 60 A 192.0.2.66", "-y", KEY)
        assert code != 0 and "REFUSED" in out
        q = dns.message.make_query("evil.x.test.", "A")
        reply = await dns.asyncquery.udp(q, server.host, port=server.dns_port, timeout=5)
        assert [rd.address for rd in reply.answer[0]] == ["127.0.0.1"]  # only the default
        assert reply.rcode() == dns.rcode.NOERROR

"""Who may UPDATE `acmekit dns` (RFC 2136 §3.3): a key named in `--allow-transfer` sits
in every secondary's configuration, so it transfers zones and publishes nothing unless
`--allow-update` names it too; without `--allow-update`, every other key may update."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process, running_dns_server

XFR_SECRET = base64.b64encode(b"transfer key of the secondaries!").decode()
UPD_SECRET = base64.b64encode(b"update key of the acme clients!!").decode()
KEYS = (f"xfr:{XFR_SECRET}", f"upd:{UPD_SECRET}")
SECRETS = {"xfr": XFR_SECRET, "upd": UPD_SECRET}
NAME = "_acme-challenge.victim.x.test."


async def update_as(server: DnsServerHandle, keyname: str, value: str) -> str:
    key = dns.tsig.Key(keyname, SECRETS[keyname], dns.tsig.HMAC_SHA256)
    message = dns.update.UpdateMessage("x.test.", keyring={key.name: key}, keyname=key.name)
    message.add(NAME, 0, "TXT", f'"{value}"')
    reply = await dns.asyncquery.tcp(message, "127.0.0.1", port=server.dns_port, timeout=5)
    return dns.rcode.to_text(reply.rcode())


async def published(server: DnsServerHandle) -> list[str]:
    query = dns.message.make_query(NAME, "TXT")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=server.dns_port, timeout=5)
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def _transfers(server: DnsServerHandle, keyname: str) -> bool:
    key = dns.tsig.Key(keyname, SECRETS[keyname], dns.tsig.HMAC_SHA256)
    try:
        list(
            dns.query.xfr(
                "127.0.0.1", "x.test.", port=server.dns_port, keyring={key.name: key},
                keyname=key.name, lifetime=10,
            )
        )  # fmt: skip
    except dns.exception.DNSException:
        return False
    return True


async def transfers(server: DnsServerHandle, keyname: str) -> bool:
    """Does an AXFR signed with `keyname` succeed? (in a thread: the server runs here)"""
    return await asyncio.to_thread(_transfers, server, keyname)


async def test_the_transfer_key_cannot_publish_by_default() -> None:
    async with running_dns_server(
        None, zones=("x.test",), tsig_keys=KEYS, allow_transfer=("xfr",)
    ) as server:
        assert await update_as(server, "xfr", "from-the-secondary") == "REFUSED"
        assert await published(server) == []
        assert await update_as(server, "upd", "from-the-client") == "NOERROR"
        assert await published(server) == ['"from-the-client"']
        assert await transfers(server, "xfr") and not await transfers(server, "upd")


@pytest.mark.parametrize(
    ("allow_update", "may"),
    [(("xfr",), {"xfr"}), (("upd",), {"upd"}), (("xfr", "upd"), {"xfr", "upd"})],
    ids=["xfr-only", "upd-only", "both"],
)
async def test_allow_update_names_the_keys_that_may(
    allow_update: tuple[str, ...], may: set[str]
) -> None:
    async with running_dns_server(
        None, zones=("x.test",), tsig_keys=KEYS, allow_transfer=("xfr",),
        allow_update=allow_update,
    ) as server:  # fmt: skip
        for keyname in ("xfr", "upd"):
            expected = "NOERROR" if keyname in may else "REFUSED"
            assert await update_as(server, keyname, keyname) == expected
        assert await published(server) == sorted(f'"{k}"' for k in may)
        assert await transfers(server, "xfr") and not await transfers(server, "upd")


async def test_allow_update_must_name_a_known_key() -> None:
    with pytest.raises(ValueError, match="--allow-update"):
        async with running_dns_server(None, tsig_keys=KEYS, allow_update=("nokey",)):
            pass


async def test_the_command_line_takes_allow_update(tmp_path: Path) -> None:
    args = ["--zone", "x.test", "--tsig-key", KEYS[0], "--tsig-key", KEYS[1]]
    args += ["--allow-transfer", "xfr", "--allow-update", "xfr"]
    with dns_server_process(tmp_path, *args, default_ipv4=None) as server:
        assert await update_as(server, "xfr", "both-rights") == "NOERROR"
        assert await update_as(server, "upd", "not-named") == "REFUSED"
        assert await published(server) == ['"both-rights"']

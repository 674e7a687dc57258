"""The client's RFC 2136 provider (what the dns-01 solver uses) against BIND 9 as the
primary server."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.query
import pytest

from acmekit.client.solvers.rfc2136 import Rfc2136DnsProvider
from acmekit.dns.store import txt_value
from acmekit_testkit.bind import authoritative_options, running_named

pytestmark = pytest.mark.interop

SECRET = base64.b64encode(b"rfc2136 updater secret, 32 bytes").decode()
NAME = "_acme-challenge.www.x.test."


async def txt_at(port: int, name: str = NAME, wait: float = 5) -> list[str]:
    q = dns.message.make_query(name, "TXT")
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=wait)
    return sorted(txt_value(rd) for rd in reply.answer[0]) if reply.answer else []


def named_conf(directory: Path, port: int) -> str:
    return (
        authoritative_options(directory, port)
        + f"""\
key "solver-key" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
zone "x.test" {{
    type primary;
    file "{directory}/x.test.zone";
    update-policy {{ grant solver-key zonesub TXT; }};
}};
"""
    )


ZONE = """\
$TTL 60
@ IN SOA ns1.x.test. hostmaster.x.test. 1 60 10 600 0
@ IN NS ns1.x.test.
ns1 IN A 127.0.0.1
* IN A 127.0.0.1
"""


def answers(port: int) -> bool:
    try:
        dns.query.udp(dns.message.make_query("x.test.", "TXT"), "127.0.0.1", port=port, timeout=0.2)
    except (OSError, dns.exception.Timeout):
        return False
    return True


@pytest.fixture
def bind_port(tmp_path: Path) -> Iterator[int]:
    zones = {"x.test.zone": ZONE}
    with running_named(tmp_path, named_conf, zones, ready=answers, threads=1) as named:
        yield named.port


async def test_updater_against_bind(bind_port: int) -> None:
    updater = Rfc2136DnsProvider("127.0.0.1", bind_port, "solver-key", SECRET, "hmac-sha256")
    assert await updater.zone_for(NAME) == "x.test."
    await updater.add_txt(NAME, "from-acmekit")
    assert await txt_at(bind_port) == ["from-acmekit"]
    await updater.remove_txt(NAME, "from-acmekit")
    assert await txt_at(bind_port) == []

"""Our RFC 2136 updater (what dns-01 solvers use) against BIND 9 as the primary server."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import pytest

from acmekit.dns.rfc2136 import Rfc2136Updater
from acmekit.dns.store import txt_value
from acmekit.dns.tsig import parse_key
from support.ports import free_tcp_udp_port

pytestmark = pytest.mark.interop

SECRET = base64.b64encode(b"rfc2136 updater secret, 32 bytes").decode()
KEY = f"hmac-sha256:solver-key:{SECRET}"
NAME = "_acme-challenge.www.x.test."


async def txt_at(port: int, name: str = NAME, wait: float = 5) -> list[str]:
    q = dns.message.make_query(name, "TXT")
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=wait)
    return sorted(txt_value(rd) for rd in reply.answer[0]) if reply.answer else []


NAMED_CONF = """\
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
}};
controls {{ }};
key "solver-key" {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "x.test" {{
    type primary;
    file "{dir}/x.test.zone";
    update-policy {{ grant solver-key zonesub TXT; }};
}};
"""
ZONE = """\
$TTL 60
@ IN SOA ns1.x.test. hostmaster.x.test. 1 60 10 600 0
@ IN NS ns1.x.test.
ns1 IN A 127.0.0.1
* IN A 127.0.0.1
"""


@pytest.fixture
async def bind_port(tmp_path: Path) -> AsyncIterator[int]:
    port = free_tcp_udp_port()
    conf = tmp_path / "named.conf"
    conf.write_text(NAMED_CONF.format(dir=tmp_path, port=port, secret=SECRET))
    (tmp_path / "x.test.zone").write_text(ZONE)
    proc = await asyncio.create_subprocess_exec(
        "/usr/sbin/named", "-g", "-n", "1", "-c", str(conf),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                await txt_at(port, "x.test.", wait=0.2)
                break
            except (OSError, dns.exception.Timeout):
                await asyncio.sleep(0.05)
        else:
            raise RuntimeError("named did not start")
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def test_updater_against_bind(bind_port: int) -> None:
    updater = Rfc2136Updater("127.0.0.1", bind_port, parse_key(KEY))
    assert await updater.find_zone(NAME) == dns.name.from_text("x.test.")
    await updater.add_txt(NAME, "from-acmekit")
    assert await txt_at(bind_port) == ["from-acmekit"]
    await updater.delete_txt(NAME, "from-acmekit")
    assert await txt_at(bind_port) == []

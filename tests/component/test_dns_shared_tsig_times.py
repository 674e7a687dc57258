"""RFC 8945 §5.2.3's replay check shared through the database (`dns_tsig_times`, dns
revision 0003), on SQLite and PostgreSQL: a request taken by one process is refused by
another, as is one signed earlier than the key's latest; a later one, or another
request in the same second, is taken. Two `acmekit dns` on one database refuse a
signed UPDATE replayed from one to the other."""

from __future__ import annotations

import asyncio
import base64
import socket
import time

import dns.message
import dns.name
import dns.rcode
import dns.tsig
import dns.update
import sqlalchemy as sa

from acmekit import migrate
from acmekit.database import create_engine
from acmekit.dns.shared import SharedTimesSigned
from acmekit_testkit.dnsserver import running_dns_server

KEY_NAME = dns.name.from_text("upd")
SECRET = base64.b64encode(b"update key of the acme clients!!").decode()
KEY = dns.tsig.Key("upd", SECRET, dns.tsig.HMAC_SHA256)


def test_every_process_refuses_what_one_took(db_url: str) -> None:
    engines = [create_engine(db_url), create_engine(db_url)]
    try:
        migrate.upgrade(engines[0], migrate.DNS)
        one, two = (SharedTimesSigned(e) for e in engines)
        assert one.accept(KEY_NAME, 1000, b"mac-a")
        assert not two.accept(KEY_NAME, 1000, b"mac-a")  # the same request, elsewhere
        assert not two.accept(KEY_NAME, 999, b"mac-b")  # signed earlier
        assert two.accept(KEY_NAME, 1000, b"mac-c")  # another in the same second
        assert not one.accept(KEY_NAME, 1000, b"mac-c")
        assert one.accept(KEY_NAME, 1001, b"mac-a")  # later
        assert not two.accept(KEY_NAME, 1000, b"mac-d")
        assert two.accept(dns.name.from_text("other"), 5, b"mac-a")  # per key
    finally:
        for engine in engines:
            engine.dispose()


def test_the_tsig_times_migration_goes_down_and_up(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, migrate.DNS)
        assert migrate.current(engine, migrate.DNS) == "0003"
        migrate.downgrade(engine, migrate.DNS, "0002")
        assert "dns_tsig_times" not in sa.inspect(engine).get_table_names()
        migrate.upgrade(engine, migrate.DNS)
        assert "dns_tsig_times" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _exchange(port: int, wire: bytes) -> dns.message.Message:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(wire, ("127.0.0.1", port))
        return dns.message.from_wire(sock.recv(65535), keyring=False)


async def test_a_replay_to_another_process_is_refused(db_url: str) -> None:
    add = dns.update.UpdateMessage("x.test.", keyring={KEY.name: KEY}, keyname=KEY.name)
    add.add("_acme-challenge.rp.x.test.", 0, "TXT", '"token"')
    wire = add.to_wire()
    servers = [
        running_dns_server(None, zones=("x.test",), tsig_keys=(f"upd:{SECRET}",), db=db_url)
        for _ in range(2)
    ]
    async with servers[0] as one, servers[1] as two:
        first = await asyncio.to_thread(_exchange, one.dns_port, wire)
        assert first.rcode() == dns.rcode.NOERROR
        replayed = await asyncio.to_thread(_exchange, two.dns_port, wire)
        assert replayed.rcode() == dns.rcode.NOTAUTH
        assert replayed.tsig[0].error == dns.rcode.BADTIME
        assert replayed.tsig[0].time_signed <= int(time.time())

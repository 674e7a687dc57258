"""RFC 8945 §5.2.3's replay check shared through the database (`dns_tsig_times`, dns
revision 0003), on SQLite and PostgreSQL: a request taken by one process is refused by
another; another request is taken, signed earlier or in the same second; a MAC is
forgotten once its time window has passed. Two `acmekit dns` on one database refuse a
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
from acmekit.dns.schema import tsig_times
from acmekit.dns.shared import SharedTimesSigned
from acmekit_testkit.dnsserver import running_dns_server

KEY_NAME = dns.name.from_text("upd")
SECRET = base64.b64encode(b"update key of the acme clients!!").decode()
KEY = dns.tsig.Key("upd", SECRET, dns.tsig.HMAC_SHA256)


def test_every_process_refuses_what_one_took(db_url: str) -> None:
    engines = [create_engine(db_url), create_engine(db_url)]
    try:
        migrate.upgrade(engines[0], migrate.DNS)
        now = int(time.time())
        one, two = (SharedTimesSigned(e) for e in engines)
        assert one.accept(KEY_NAME, now + 120, 300, b"mac-a")  # a fast clock
        assert not two.accept(KEY_NAME, now + 120, 300, b"mac-a")  # the same, elsewhere
        assert two.accept(KEY_NAME, now, 300, b"mac-b")  # signed earlier: not a replay
        assert two.accept(KEY_NAME, now, 300, b"mac-c")  # another in the same second
        assert not one.accept(KEY_NAME, now, 300, b"mac-c")
        assert two.accept(dns.name.from_text("other"), now, 300, b"mac-a")  # per key
    finally:
        for engine in engines:
            engine.dispose()


def test_a_mac_is_forgotten_once_its_window_has_passed(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, migrate.DNS)
        clock = [1_000_000.0]
        macs = SharedTimesSigned(engine)
        macs.clock = lambda: clock[0]
        assert macs.accept(KEY_NAME, 1_000_000, 300, b"mac-a")
        assert not macs.accept(KEY_NAME, 1_000_000, 300, b"mac-a")
        clock[0] += 301  # the time check refuses it from now on
        assert macs.accept(KEY_NAME, 1_000_301, 300, b"mac-b")
        with engine.connect() as c:
            left = c.execute(sa.select(tsig_times.c.valid_until)).scalars().all()
        assert left == [1_000_601]
        assert macs.accept(KEY_NAME, 1_000_301, 65535, b"mac-wide")  # kept as long only
        with engine.connect() as c:
            left = c.execute(sa.select(tsig_times.c.valid_until)).scalars().all()
        assert sorted(left) == [1_000_601, 1_000_601]
    finally:
        engine.dispose()


def test_a_mac_is_not_forgotten_while_a_time_check_just_before_passed(db_url: str) -> None:
    """As in one process: the window is checked again at the now that forgets MACs, so a
    replay whose time check passed before the second turned is still refused."""
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, migrate.DNS)
        clock = [1_000_000.0]
        macs = SharedTimesSigned(engine)
        macs.clock = lambda: clock[0]
        assert macs.accept(KEY_NAME, 1_000_000 - 300, 300, b"edge")
        clock[0] += 1
        assert not macs.accept(KEY_NAME, 1_000_000 - 300, 300, b"edge")
    finally:
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

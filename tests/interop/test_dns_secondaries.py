"""`acmekit dns` as a hidden primary for two BIND 9 secondaries (Debian's named) on
loopback: records set through the API reach both by NOTIFY and TSIG-signed transfers; a
secondary that was down catches up by IXFR; a transfer without the key is refused; two
`acmekit dns` processes sharing one PostgreSQL database keep the API and the zone going
when one of them is killed; and the fleet issues a wildcard by dns-01 through the
primary's API while the CA resolves through a secondary only. The fleet's view of the
secondaries (its status page and /metrics) is checked against the same BIND pair.

Waits are polls with generous bounds (tests never assert timings); a change usually
shows at both secondaries well within a second.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

from acmekit.client.solvers.dns01 import Dns01Solver
from acmekit.dns.tsig import parse_key
from acmekit.fleet.cas import CaSpec
from acmekit.fleet.delegation import AcmekitDnsProvider
from acmekit.fleet.dnssecondaries import DnsSecondaries, SecondariesReport
from acmekit.fleet.metrics import secondary_gauges
from acmekit.fleet.model import ChallengeMethod, SiteState
from acmekit.fleet.status import secondaries_section
from acmekit.protocol.messages import ChallengeType
from acmekit_testkit.bind_secondary import BindSecondary
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.fleet_cas import directory, two_ca_fleet
from acmekit_testkit.ports import free_tcp_udp_port
from acmekit_testkit.processes import wait_until
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.interop

ZONE = "test"  # the secondaries answer for every name the CA asks about (CAA climbs to it)
SECRET = base64.b64encode(b"zone transfer key for secondaries").decode()
KEY = f"xfr-key:{SECRET}"
OTHER_SECRET = base64.b64encode(b"a key that may only send updates").decode()
WAIT = 15.0  # seconds; a bound for slow machines, not a measure


@contextmanager
def primary(
    tmp_path: Path, secondaries: list[BindSecondary], *extra: str
) -> Iterator[DnsServerHandle]:
    """`acmekit dns` serving ZONE to `secondaries` (NOTIFY to each, transfers with KEY)."""
    args = ["--zone", ZONE, "--tsig-key", KEY, "--tsig-key", f"update-key:{OTHER_SECRET}"]
    args += ["--allow-transfer", "xfr-key"]
    for s in secondaries:
        args += ["--notify", f"127.0.0.1:{s.port}"]
    with dns_server_process(tmp_path, *args, *extra, default_ipv4=None) as handle:
        yield handle


def _logs(*secondaries: BindSecondary) -> list[Path]:
    return [p for s in secondaries for p in sorted(s.directory.glob("named-*.log"))]


def _soa_serial(handle: DnsServerHandle) -> int:
    reply = dns.query.udp(
        dns.message.make_query(ZONE, dns.rdatatype.SOA),
        "127.0.0.1",
        port=handle.dns_port,
        timeout=2,
    )
    return int(reply.answer[0][0].serial)


def _status(handle: DnsServerHandle) -> Any:
    with urllib.request.urlopen(handle.api_url + "/secondaries", timeout=10) as resp:
        return json.loads(resp.read())


async def _fleet_view(api_url: str) -> SecondariesReport:
    secondaries = DnsSecondaries(api_url)
    try:
        return await secondaries.report()
    finally:
        await secondaries.close()


def _both_answer(name: str, value: str, *secondaries: BindSecondary) -> None:
    wait_until(
        f"{name} TXT {value} at every secondary",
        lambda: all(value in s.txt(name) for s in secondaries),
        WAIT,
        _logs(*secondaries),
    )


def _secondaries(tmp_path: Path, primaries: list[int]) -> list[BindSecondary]:
    key = parse_key(KEY)
    return [
        BindSecondary(tmp_path / f"secondary{i}", ZONE, [("127.0.0.1", p) for p in primaries], key)
        for i in (1, 2)
    ]


def test_two_secondaries_follow_the_api_and_catch_up_by_ixfr(tmp_path: Path) -> None:
    port = free_tcp_udp_port()
    one, two = _secondaries(tmp_path, [port])
    with (
        primary(tmp_path, [one, two], "--listen", f"127.0.0.1:{port}") as api,
        one.running(),
        ExitStack() as stack,
    ):
        stack.enter_context(two.running())
        api.set_txt_sync(f"_acme-challenge.www.{ZONE}.", "token-1")
        _both_answer(f"_acme-challenge.www.{ZONE}.", "token-1", one, two)

        journal = two.directory / f"{ZONE}.db.jnl"  # BIND's record of IXFRs applied
        before = journal.stat().st_size
        stack.close()  # the second secondary goes down; two changes happen meanwhile
        api.set_txt_sync(f"_acme-challenge.api.{ZONE}.", "token-2")
        api.clear_txt_sync(f"_acme-challenge.www.{ZONE}.")
        _both_answer(f"_acme-challenge.api.{ZONE}.", "token-2", one)
        serial = _soa_serial(api)
        wait_until("the first secondary in step", lambda: one.serial() == serial, WAIT, _logs(one))
        status = _status(api)
        assert status["serial"] == serial
        assert {(s["secondary"], s["serial"], s["state"]) for s in status["secondaries"]} == {
            (f"127.0.0.1:{one.port}", serial, "in step"),
            (f"127.0.0.1:{two.port}", None, "behind"),  # down: no answer
        }
        # The fleet's view of the same (its status page and /metrics)
        report = asyncio.run(_fleet_view(api.api_url))
        assert report.primary_serial == serial
        lines = secondary_gauges(report)
        at_one = f'secondary="127.0.0.1:{one.port}",zone="{ZONE}."'
        at_two = f'secondary="127.0.0.1:{two.port}",zone="{ZONE}."'
        assert f"acmekit_dns_secondary_serial_lag{{{at_one}}} 0" in lines
        assert f"acmekit_dns_secondary_in_step{{{at_one}}} 1" in lines
        assert f"acmekit_dns_secondary_up{{{at_two}}} 0" in lines
        assert secondaries_section(report)[0] == "DNS secondaries (1 of 2 in step)"

        with two.running():  # back, from its zone file: it asks for what it missed
            wait_until("the returning secondary at the primary's serial",
                       lambda: two.serial() == serial, WAIT, _logs(two))  # fmt: skip
            assert two.txt(f"_acme-challenge.api.{ZONE}.") == ["token-2"]
            assert two.txt(f"_acme-challenge.www.{ZONE}.") == []
            # an AXFR would have replaced the zone and dropped the journal; an IXFR adds to it
            assert journal.stat().st_size > before


def test_a_transfer_without_the_key_is_refused(tmp_path: Path) -> None:
    with primary(tmp_path, []) as api:
        api.set_txt_sync(f"_acme-challenge.www.{ZONE}.", "secret-ish")

        def transfer(keyname: str | None, secret: str | None) -> dns.zone.Zone:
            zone = dns.zone.Zone(ZONE)
            query, _ = dns.xfr.make_query(zone)
            if keyname is not None and secret is not None:
                query.use_tsig(dns.tsigkeyring.from_text({keyname: secret}), keyname)
            dns.query.inbound_xfr("127.0.0.1", zone, query, port=api.dns_port, lifetime=5)
            return zone

        for keyname, secret in ((None, None), ("update-key", OTHER_SECRET)):
            with pytest.raises(dns.xfr.TransferError) as refused:
                transfer(keyname, secret)
            assert refused.value.rcode == dns.rcode.REFUSED
        with pytest.raises(dns.exception.DNSException):  # the right name, a wrong secret
            transfer("xfr-key", OTHER_SECRET)
        zone = transfer("xfr-key", SECRET)
        assert zone.get_rdataset("_acme-challenge.www", "TXT") is not None


@pytest.mark.postgres
def test_two_primaries_on_one_database_survive_the_loss_of_one(tmp_path: Path) -> None:
    require_postgres_or_skip()
    ports = [free_tcp_udp_port(), free_tcp_udp_port()]
    one, two = _secondaries(tmp_path, ports)
    with (
        fresh_postgres_database("acmekit_dns") as url,
        primary(tmp_path, [one, two], "--listen", f"127.0.0.1:{ports[0]}", "--db", url) as first,
        primary(tmp_path, [one, two], "--listen", f"127.0.0.1:{ports[1]}", "--db", url) as second,
        one.running(),
        two.running(),
    ):
        first.set_txt_sync(f"_acme-challenge.a.{ZONE}.", "through-the-first")
        _both_answer(f"_acme-challenge.a.{ZONE}.", "through-the-first", one, two)
        wait_until(
            "the second primary has the first one's record",
            lambda: _soa_serial(second) == _soa_serial(first),
            WAIT,
            _logs(one, two),
        )

        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        second.set_txt_sync(f"_acme-challenge.b.{ZONE}.", "through-the-second")
        _both_answer(f"_acme-challenge.b.{ZONE}.", "through-the-second", one, two)
        assert one.txt(f"_acme-challenge.a.{ZONE}.") == ["through-the-first"]
        assert one.serial() == two.serial() == _soa_serial(second)


async def test_the_fleet_issues_a_wildcard_while_the_ca_asks_a_secondary(tmp_path: Path) -> None:
    port = free_tcp_udp_port()
    (secondary, _) = _secondaries(tmp_path, [port])
    with (
        primary(tmp_path, [secondary], "--listen", f"127.0.0.1:{port}") as api,
        secondary.running(),
    ):
        async with two_ca_fleet(tmp_path, secondary.port, {"ca": {}}) as fleet:
            dns01 = Dns01Solver(
                AcmekitDnsProvider(api.api_url),  # publishes at the primary
                resolver=("127.0.0.1", secondary.port),  # checks at the secondary
                nameserver_port=secondary.port,
                propagation_interval=0.2,
                propagation_timeout=WAIT,
            )
            pool = await fleet.pool([CaSpec("ca", directory("ca"))], {ChallengeType.DNS_01: dns01})
            names = (f"*.shop.{ZONE}", f"shop.{ZONE}")
            site = fleet.inventory.sites.add_site(names, ChallengeMethod.DNS_01, fleet.now())
            assert await fleet.worker(pool).run_once() == 1
            done = fleet.inventory.sites.site(site.id)
            assert done is not None and done.state == SiteState.ACTIVE, done.last_problem
            assert done.current_version == 1
        # the challenge's TXT values reached the secondary only by transfers from serial 1 on
        serials = re.findall(r"transferred serial (\d+)", secondary.log_text())
        assert max(int(n) for n in serials) > 1

"""The dns-01 solver, its CNAME following and its providers, against `acmekit dns` on loopback.

The DNS server runs in this event loop on free ports; its NS host (ns1.<zone>) is
127.0.0.1, where nothing listens on port 53, so propagation checks fall back to the
resolver, as the solver documents.
"""

from __future__ import annotations

import base64
import json
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmekit.client.resources import Challenge
from acmekit.client.solvers.dns01 import Dns01Solver, TxtRecord
from acmekit.client.solvers.dnshook import HookDnsProvider
from acmekit.client.solvers.dnslookup import find_zone, follow_cname, query, txt_values
from acmekit.client.solvers.errors import DnsUpdateError, HookError, PropagationError, SolverError
from acmekit.client.solvers.rfc2136 import Rfc2136DnsProvider
from acmekit.protocol.challenges import dns01_txt_value
from acmekit.protocol.messages import ChallengeStatus, ChallengeType, Identifier, IdentifierType
from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server

SECRET = base64.b64encode(b"dns-01 solver test secret, 32 o!").decode()
KEY = f"hmac-sha256:solver-key:{SECRET}"


class FakeClock:
    """`sleep` moves `now` on and runs whatever a test hooked to it."""

    def __init__(self) -> None:
        self.current = datetime(2030, 1, 1, tzinfo=UTC)
        self.slept: list[float] = []
        self.on_sleep: Callable[[], Awaitable[None]] | None = None

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.current += timedelta(seconds=seconds)
        if self.on_sleep is not None:
            await self.on_sleep()


class ApiProvider:
    """Publishes through the DNS server's HTTP API; `hold` keeps adds back until released."""

    def __init__(self, server: DnsServerHandle) -> None:
        self.server = server
        self.added: list[tuple[str, str]] = []
        self.removed: list[tuple[str, str]] = []
        self.hold = False
        self.held: list[tuple[str, str]] = []

    async def add_txt(self, fqdn: str, value: str) -> None:
        self.added.append((fqdn, value))
        if self.hold:
            self.held.append((fqdn, value))
        else:
            await self.server.set_txt(fqdn, value)

    async def release(self) -> None:
        for fqdn, value in self.held:
            await self.server.set_txt(fqdn, value)
        self.held.clear()

    async def remove_txt(self, fqdn: str, value: str) -> None:
        self.removed.append((fqdn, value))
        await self.server.clear_txt(fqdn)


def dns01(token: str) -> Challenge:
    return Challenge("https://ca.test/c", str(ChallengeType.DNS_01), ChallengeStatus.PENDING, token)


def ident(name: str) -> Identifier:
    return Identifier(IdentifierType.DNS, name)


@pytest.fixture
async def server() -> AsyncIterator[DnsServerHandle]:
    async with running_dns_server(tsig_keys=(KEY,)) as handle:
        yield handle


def resolver(server: DnsServerHandle) -> tuple[str, int]:
    return (server.host, server.dns_port)


async def txt_at(server: DnsServerHandle, name: str) -> set[str]:
    return txt_values(await query(resolver(server), name, "TXT"))


# -- CNAME following ---------------------------------------------------------------------


async def test_no_cname_means_the_name_itself(server: DnsServerHandle) -> None:
    solver = Dns01Solver(ApiProvider(server), resolver=resolver(server))
    assert await solver.target(ident("a.x.test")) == "_acme-challenge.a.x.test."
    assert await solver.target(ident("*.a.x.test")) == "_acme-challenge.a.x.test."


async def test_a_cname_chain_is_followed_to_its_end(server: DnsServerHandle) -> None:
    await server.post("/set-cname", {"host": "_acme-challenge.a.x.test.", "target": "m.mid.test."})
    await server.post("/set-cname", {"host": "m.mid.test.", "target": "r1.auth.test."})
    solver = Dns01Solver(ApiProvider(server), resolver=resolver(server))
    assert await solver.target(ident("A.x.test")) == "r1.auth.test."
    unfollowed = Dns01Solver(ApiProvider(server), resolver=resolver(server), follow_cname=False)
    assert await unfollowed.target(ident("a.x.test")) == "_acme-challenge.a.x.test."


async def test_a_cname_loop_is_refused(server: DnsServerHandle) -> None:
    await server.post("/set-cname", {"host": "l1.loop.test.", "target": "l2.loop.test."})
    await server.post("/set-cname", {"host": "l2.loop.test.", "target": "l1.loop.test."})
    with pytest.raises(SolverError, match="CNAME loop"):
        await follow_cname(resolver(server), "l1.loop.test")


async def test_a_long_chain_is_refused(server: DnsServerHandle) -> None:
    for i in range(4):
        await server.post(
            "/set-cname", {"host": f"c{i}.long.test.", "target": f"c{i + 1}.long.test."}
        )
    assert await follow_cname(resolver(server), "c0.long.test", limit=4) == "c4.long.test."
    with pytest.raises(SolverError, match="longer than 3"):
        await follow_cname(resolver(server), "c0.long.test", limit=3)


async def test_zone_is_found_by_walking_up(server: DnsServerHandle) -> None:
    assert await find_zone(resolver(server), "_acme-challenge.deep.a.x.test.") == "x.test."


# -- present, wait, cleanup --------------------------------------------------------------


async def test_apex_and_wildcard_publish_two_values_at_one_name(server: DnsServerHandle) -> None:
    provider = ApiProvider(server)
    solver = Dns01Solver(provider, resolver=resolver(server), clock=FakeClock())
    await solver.present(ident("x.test"), dns01("t1"), "t1.k")
    await solver.present(ident("x.test"), dns01("t2"), "t2.k")  # the wildcard's authorization
    await solver.wait()
    values = {dns01_txt_value("t1.k"), dns01_txt_value("t2.k")}
    assert await txt_at(server, "_acme-challenge.x.test.") == values
    assert sorted(provider.added) == sorted(("_acme-challenge.x.test.", v) for v in values)
    await solver.cleanup(ident("x.test"), dns01("t1"), "t1.k")
    await solver.cleanup(ident("x.test"), dns01("t2"), "t2.k")
    assert len(provider.removed) == 2
    assert await txt_at(server, "_acme-challenge.x.test.") == set()


async def test_delegated_record_is_published_at_the_cname_target(server: DnsServerHandle) -> None:
    await server.post("/set-cname", {"host": "_acme-challenge.b.x.test.", "target": "b.auth.test."})
    provider = ApiProvider(server)
    solver = Dns01Solver(provider, resolver=resolver(server), clock=FakeClock())
    await solver.present(ident("b.x.test"), dns01("t"), "t.k")
    await solver.wait()
    assert provider.added == [("b.auth.test.", dns01_txt_value("t.k"))]
    # A validator asking at the original name follows the CNAME to the value.
    assert await txt_at(server, "_acme-challenge.b.x.test.") == {dns01_txt_value("t.k")}


async def test_wait_polls_until_records_appear(server: DnsServerHandle) -> None:
    provider = ApiProvider(server)
    provider.hold = True
    clock = FakeClock()
    polls = 0

    async def release_on_third_sleep() -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            await provider.release()

    clock.on_sleep = release_on_third_sleep
    solver = Dns01Solver(provider, resolver=resolver(server), clock=clock, propagation_interval=5.0)
    await solver.present(ident("c.x.test"), dns01("t"), "t.k")
    await solver.present(ident("d.x.test"), dns01("t"), "t.k")
    await solver.wait()
    assert clock.slept == [5.0, 5.0, 5.0]
    await solver.wait()  # nothing new: returns without polling
    assert clock.slept == [5.0, 5.0, 5.0]


async def test_wait_gives_up_naming_the_missing_records(server: DnsServerHandle) -> None:
    provider = ApiProvider(server)
    solver = Dns01Solver(
        provider, resolver=resolver(server), clock=FakeClock(), propagation_timeout=10.0
    )
    await solver.present(ident("e.x.test"), dns01("t"), "t.k")
    provider.hold = True
    await solver.present(ident("f.x.test"), dns01("t"), "t.k")
    with pytest.raises(PropagationError, match=r"after 10 s: _acme-challenge\.f\.x\.test\.$"):
        await solver.wait()


async def test_shared_authorization_is_published_and_removed_once(server: DnsServerHandle) -> None:
    provider = ApiProvider(server)
    solver = Dns01Solver(provider, resolver=resolver(server), clock=FakeClock())
    for _ in range(2):
        await solver.present(ident("g.x.test"), dns01("t"), "t.k")
    await solver.cleanup(ident("g.x.test"), dns01("t"), "t.k")
    assert provider.removed == []
    await solver.cleanup(ident("g.x.test"), dns01("t"), "t.k")
    assert len(provider.added) == len(provider.removed) == 1


async def test_visible_checks_one_record(server: DnsServerHandle) -> None:
    solver = Dns01Solver(ApiProvider(server), resolver=resolver(server))
    await server.set_txt("_acme-challenge.h.x.test.", "v1")
    assert await solver.visible(TxtRecord("_acme-challenge.h.x.test.", "v1"))
    assert not await solver.visible(TxtRecord("_acme-challenge.h.x.test.", "v2"))


async def test_authoritative_servers_are_asked_before_the_resolver(
    server: DnsServerHandle,
) -> None:
    # A second server plays the zone's NS host (127.0.0.1) and lags behind the resolver.
    async with running_dns_server() as authority:
        solver = Dns01Solver(
            ApiProvider(server), resolver=resolver(server), nameserver_port=authority.dns_port
        )
        record = TxtRecord("_acme-challenge.i.x.test.", "v")
        await server.set_txt(record.fqdn, "v")
        assert not await solver.visible(record)
        await authority.set_txt(record.fqdn, "v")
        assert await solver.visible(record)


# -- providers ---------------------------------------------------------------------------


async def test_rfc2136_adds_and_removes_single_values(server: DnsServerHandle) -> None:
    provider = Rfc2136DnsProvider(server.host, server.dns_port, "solver-key", SECRET)
    name = "_acme-challenge.www.x.test."
    await provider.add_txt(name, "one")
    await provider.add_txt(name.rstrip("."), "two")
    assert await txt_at(server, name) == {"one", "two"}
    assert await provider.zone_for(name) == "x.test."
    await provider.remove_txt(name, "one")
    assert await txt_at(server, name) == {"two"}


async def test_rfc2136_with_a_given_zone_and_signed_queries(server: DnsServerHandle) -> None:
    provider = Rfc2136DnsProvider(
        server.host, server.dns_port, "solver-key", SECRET, "HMAC-SHA256", zone="y.test",
        sign_query=True,
    )  # fmt: skip
    await provider.add_txt("_acme-challenge.y.test.", "v")
    assert await txt_at(server, "_acme-challenge.y.test.") == {"v"}


async def test_rfc2136_wrong_key_is_a_clear_error(server: DnsServerHandle) -> None:
    wrong = base64.b64encode(b"not the secret the server knows!").decode()
    provider = Rfc2136DnsProvider(server.host, server.dns_port, "solver-key", wrong)
    with pytest.raises(DnsUpdateError, match=r"UPDATE add TXT at _acme-challenge\.z\.x\.test\."):
        await provider.add_txt("_acme-challenge.z.x.test.", "v")
    unknown = Rfc2136DnsProvider(server.host, server.dns_port, "other-key", SECRET)
    with pytest.raises(DnsUpdateError):
        await unknown.add_txt("_acme-challenge.z.x.test.", "v")
    assert await txt_at(server, "_acme-challenge.z.x.test.") == set()


def hook_command(log: Path, fail: bool = False) -> str:
    code = "import json, sys;open(sys.argv[1], 'a').write(json.dumps(sys.argv[2:]) + '\\n');" + (
        "sys.exit('no zone for that name')" if fail else ""
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {shlex.quote(str(log))}"


async def test_hook_provider_passes_action_fqdn_value(tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    provider = HookDnsProvider(hook_command(log))
    await provider.add_txt("_acme-challenge.a.x.test", "v1")
    await provider.remove_txt("_acme-challenge.a.x.test.", "v1")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        ["present", "_acme-challenge.a.x.test.", "v1"],
        ["cleanup", "_acme-challenge.a.x.test.", "v1"],
    ]


async def test_hook_provider_failure_names_the_hook(tmp_path: Path) -> None:
    provider = HookDnsProvider(hook_command(tmp_path / "hook.log", fail=True))
    with pytest.raises(HookError, match=r"DNS hook present .* status 1: no zone for that name"):
        await provider.add_txt("_acme-challenge.a.x.test.", "v1")


def test_hook_provider_needs_a_command() -> None:
    with pytest.raises(ValueError, match="empty"):
        HookDnsProvider("  ")

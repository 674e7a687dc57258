"""`acmekit dns` over real sockets on loopback: dnspython and dig, UDP and TCP, the API."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from acmekit.dns.store import txt_value
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process, running_dns_server

ACME_TXT = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"


async def query(
    server: DnsServerHandle, name: str, rdtype: str, *, tcp: bool = False
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0)
    if tcp:
        return await dns.asyncquery.tcp(q, server.host, port=server.dns_port, timeout=5)
    return await dns.asyncquery.udp(q, server.host, port=server.dns_port, timeout=5)


async def dig(server: DnsServerHandle, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/dig", f"@{server.host}", "-p", str(server.dns_port), "+norec", "+time=5",
        "+tries=1", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    return out.decode()


async def populate(server: DnsServerHandle) -> None:
    await server.set_txt("_acme-challenge.x.test.", ACME_TXT)
    await server.set_txt("_acme-challenge.x.test.", "second-value")
    await server.post("/add-a", {"host": "www.x.test.", "addresses": ["192.0.2.10"]})
    await server.post("/add-aaaa", {"host": "www.x.test", "addresses": ["2001:db8::10"]})
    await server.post("/set-cname", {"host": "alias.x.test.", "target": "www.x.test."})
    policies = [{"tag": "issue", "value": "ca.test"}, {"tag": "iodef", "value": "mailto:a@x"}]
    await server.post("/add-caa", {"host": "x.test.", "policies": policies})


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_dnspython_gets_each_record_type(tcp: bool) -> None:
    async with running_dns_server(default_ipv4=None) as server:
        await populate(server)
        txt = await query(server, "_ACME-Challenge.X.test.", "TXT", tcp=tcp)
        assert txt.flags & dns.flags.AA
        assert sorted(txt_value(rd) for rd in txt.answer[0]) == [ACME_TXT, "second-value"]
        a = await query(server, "www.x.test.", "A", tcp=tcp)
        assert [rd.address for rd in a.answer[0]] == ["192.0.2.10"]
        aaaa = await query(server, "www.x.test.", "AAAA", tcp=tcp)
        assert [rd.address for rd in aaaa.answer[0]] == ["2001:db8::10"]
        chased = await query(server, "alias.x.test.", "A", tcp=tcp)
        assert [r.rdtype for r in chased.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
        caa = await query(server, "x.test.", "CAA", tcp=tcp)
        assert sorted(rd.tag for rd in caa.answer[0]) == [b"iodef", b"issue"]
        soa = await query(server, "x.test.", "SOA", tcp=tcp)
        assert soa.answer[0].rdtype == dns.rdatatype.SOA


async def test_nxdomain_and_nodata() -> None:
    async with running_dns_server(default_ipv4=None) as server:
        await populate(server)
        nx = await query(server, "missing.x.test.", "A")
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
        nodata = await query(server, "www.x.test.", "TXT")
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        assert nodata.authority[0].rdtype == dns.rdatatype.SOA


async def test_dig_answers_for_each_type_and_status() -> None:
    async with running_dns_server(default_ipv4=None) as server:
        await populate(server)
        assert '"second-value"' in await dig(server, "+short", "_acme-challenge.x.test", "TXT")
        assert (await dig(server, "+short", "www.x.test", "A")).strip() == "192.0.2.10"
        assert (await dig(server, "+short", "+tcp", "www.x.test", "AAAA")).strip() == (
            "2001:db8::10"
        )
        assert "www.x.test." in await dig(server, "+short", "alias.x.test", "A")
        assert 'issue "ca.test"' in await dig(server, "+short", "x.test", "CAA")
        assert "ns1.x.test." in await dig(server, "+short", "x.test", "NS")
        nx = await dig(server, "missing.x.test", "A")
        assert "status: NXDOMAIN" in nx and "flags: qr aa" in nx
        nodata = await dig(server, "+tcp", "www.x.test", "TXT")
        assert "status: NOERROR" in nodata and "ANSWER: 0" in nodata and "SOA" in nodata


async def test_default_address_answers_every_name() -> None:
    async with running_dns_server(default_ipv4="127.0.0.1", default_ipv6="::1") as server:
        assert (await dig(server, "+short", "anything.example.test", "A")).strip() == "127.0.0.1"
        assert (await dig(server, "+short", "anything.example.test", "AAAA")).strip() == "::1"
        await server.post("/set-default-ipv4", {"ip": "127.0.0.2"})
        assert (await dig(server, "+short", "other.example.test", "A")).strip() == "127.0.0.2"


async def test_large_answer_truncates_over_udp_and_dig_retries_over_tcp() -> None:
    async with running_dns_server() as server:
        for i in range(30):
            await server.set_txt("big.x.test.", f"{i:02d}-" + "v" * 80)
        udp = await dig(server, "+ignore", "+noedns", "big.x.test", "TXT")
        assert "flags: qr aa tc;" in udp and "ANSWER: 0" in udp
        full = await dig(server, "big.x.test", "TXT")
        assert "ANSWER: 30" in full and "(TCP)" in full


async def test_clear_calls_remove_records() -> None:
    async with running_dns_server(default_ipv4=None) as server:
        await populate(server)
        await server.clear_txt("_acme-challenge.x.test.")
        for path in ("/clear-a", "/clear-aaaa", "/clear-cname"):
            await server.post(path, {"host": "www.x.test."})
        await server.post("/clear-cname", {"host": "alias.x.test."})
        await server.post("/clear-caa", {"host": "x.test."})
        txt = await query(server, "_acme-challenge.x.test.", "TXT")
        assert txt.rcode() == dns.rcode.NXDOMAIN
        assert (await query(server, "alias.x.test.", "A")).rcode() == dns.rcode.NXDOMAIN
        caa = await query(server, "x.test.", "CAA")
        assert caa.rcode() == dns.rcode.NOERROR and not caa.answer


async def test_api_rejects_bad_input_with_a_problem() -> None:
    async with running_dns_server() as server, aiohttp.ClientSession() as session:
        for path, body in [
            ("/set-txt", b"not json"),
            ("/set-txt", b"[" * 20_000 + b"]" * 20_000),
            ("/set-txt", json.dumps({"host": "x.test."}).encode()),
            ("/add-a", json.dumps({"host": "x.test.", "addresses": ["::1"]}).encode()),
            ("/set-cname", json.dumps({"host": "", "target": "y.test."}).encode()),
        ]:
            async with session.post(server.api_url + path, data=body) as resp:
                assert resp.status == 400
                assert resp.content_type == "application/problem+json"
                doc = await resp.json(content_type=None)
                assert doc["type"] == "urn:ietf:params:acme:error:malformed"


async def test_api_token_is_required_when_set() -> None:
    async with running_dns_server(api_token="s3cret") as server:
        await server.set_txt("_acme-challenge.t.test.", "ok")  # the handle sends the token
        async with aiohttp.ClientSession() as session:
            doc = {"host": "_acme-challenge.t.test.", "value": "nope"}
            async with session.post(server.api_url + "/set-txt", json=doc) as resp:
                assert resp.status == 403
            headers = {"Authorization": "Bearer wrong"}
            async with session.post(server.api_url + "/clear-txt", json=doc, headers=headers) as r:
                assert r.status == 403
        txt = await query(server, "_acme-challenge.t.test.", "TXT")
        assert [txt_value(rd) for rd in txt.answer[0]] == ["ok"]


async def test_acme_dns_register_and_update_keep_two_values() -> None:
    async with running_dns_server() as server, aiohttp.ClientSession() as session:
        async with session.post(server.api_url + "/register") as resp:
            assert resp.status == 201
            reg = await resp.json()
        assert reg["fulldomain"] == f"{reg['subdomain']}.acme-dns.test"
        headers = {"X-Api-User": reg["username"], "X-Api-Key": reg["password"]}
        values = [c * 43 for c in "abc"]
        for value in values:
            doc = {"subdomain": reg["subdomain"], "txt": value}
            async with session.post(server.api_url + "/update", json=doc, headers=headers) as r:
                assert r.status == 200 and (await r.json()) == {"txt": value}
        txt = await query(server, reg["fulldomain"] + ".", "TXT")
        assert sorted(txt_value(rd) for rd in txt.answer[0]) == values[1:]
        bad_key = {**headers, "X-Api-Key": "wrong"}
        doc = {"subdomain": reg["subdomain"], "txt": "d" * 43}
        async with session.post(server.api_url + "/update", json=doc, headers=bad_key) as r:
            assert r.status == 401 and (await r.json()) == {"error": "forbidden"}
        other = {"subdomain": "someone-else", "txt": "d" * 43}
        async with session.post(server.api_url + "/update", json=other, headers=headers) as r:
            assert r.status == 401
        short = {"subdomain": reg["subdomain"], "txt": "too-short"}
        async with session.post(server.api_url + "/update", json=short, headers=headers) as r:
            assert r.status == 400 and (await r.json()) == {"error": "bad_txt"}


async def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "dns-state.json"
    async with running_dns_server(state=state) as server:
        await server.set_txt("_acme-challenge.keep.test.", "kept")
        reg = await server.post("/register", {})
    assert state.stat().st_mode & 0o777 == 0o600
    async with running_dns_server(state=state) as server:
        txt = await query(server, "_acme-challenge.keep.test.", "TXT")
        assert [txt_value(rd) for rd in txt.answer[0]] == ["kept"]
        headers = {"X-Api-User": reg["username"], "X-Api-Key": reg["password"]}
        doc = {"subdomain": reg["subdomain"], "txt": "e" * 43}
        async with (
            aiohttp.ClientSession() as session,
            session.post(server.api_url + "/update", json=doc, headers=headers) as r,
        ):
            assert r.status == 200
    assert not temp_files_left(tmp_path)


def temp_files_left(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".dns-state")]


async def test_tcp_connection_carries_several_queries() -> None:
    async with running_dns_server() as server:
        reader, writer = await asyncio.open_connection(server.host, server.dns_port)
        try:
            for i in range(3):
                wire = dns.message.make_query(f"n{i}.x.test.", "A").to_wire()
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
                length = int.from_bytes(await reader.readexactly(2), "big")
                reply = dns.message.from_wire(await reader.readexactly(length))
                assert reply.answer[0][0].address == "127.0.0.1"
        finally:
            writer.close()
            await writer.wait_closed()


def test_command_prints_its_ports_and_serves(tmp_path: Path) -> None:
    with dns_server_process(tmp_path, "--zone", "z.test") as server:
        server.set_txt_sync("_acme-challenge.z.test.", ACME_TXT)
        q = dns.message.make_query("_acme-challenge.z.test.", "TXT").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(q, (server.host, server.dns_port))
            reply = dns.message.from_wire(sock.recv(4096))
        assert txt_value(reply.answer[0][0]) == ACME_TXT
        sock_q = dns.message.make_query("example.com.", "A").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(sock_q, (server.host, server.dns_port))
            assert dns.message.from_wire(sock.recv(4096)).rcode() == dns.rcode.REFUSED


async def _api_status(
    server: DnsServerHandle, path: str, doc: dict[str, object]
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.api_url + path, json=doc) as resp,
    ):
        body = await resp.json(content_type=None) if resp.status != 200 else {}
        return resp.status, str(body.get("detail", ""))


async def test_api_refuses_records_at_the_root_or_a_tld() -> None:
    async with running_dns_server() as server:
        for host in (".", "test.", "com"):
            status, detail = await _api_status(server, "/set-txt", {"host": host, "value": "v"})
            assert status == 400 and "top-level domain" in detail, (host, detail)
        assert await _api_status(server, "/set-txt", {"host": "x.test.", "value": "v"}) == (200, "")
        answer = await query(server, ".", "TXT")
        assert not answer.answer


async def test_api_refuses_records_outside_the_zones_served() -> None:
    async with running_dns_server(zones=("x.test",)) as server:
        doc = {"host": "_acme-challenge.y.test.", "value": "v"}
        status, detail = await _api_status(server, "/set-txt", doc)
        assert status == 400 and "outside the zones this server serves (x.test.)" in detail
        doc = {"host": "_acme-challenge.a.x.test.", "value": "v"}
        assert await _api_status(server, "/set-txt", doc) == (200, "")


def _udp_burst(port: int, source: str, count: int) -> list[dns.message.Message]:
    """Send `count` queries at once from `source`; the answers that come back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(2)
        for _ in range(count):
            sock.sendto(dns.message.make_query("www.x.test.", "A").to_wire(), ("127.0.0.1", port))
        answers = []
        try:
            while len(answers) < count:
                answers.append(dns.message.from_wire(sock.recv(65535)))
        except TimeoutError:
            pass
        return answers


def test_udp_answers_are_rate_limited_per_client_network(tmp_path: Path) -> None:
    flags = ("--rrl-rate", "2", "--rrl-slip", "2", "--no-rrl-exempt-loopback")
    with dns_server_process(tmp_path, *flags) as server:
        answers = _udp_burst(server.dns_port, "127.0.0.1", 40)
        full = [a for a in answers if a.answer]
        slipped = [a for a in answers if a.flags & dns.flags.TC and not a.answer]
        assert 1 <= len(full) < 40 and slipped, (len(full), len(slipped))
        assert len(full) + len(slipped) < 40  # the rest were not answered at all
        # Another /24 still gets answers, and TCP is not limited.
        assert _udp_burst(server.dns_port, "127.0.1.1", 1)[0].answer
        q = dns.message.make_query("www.x.test.", "A")
        assert dns.query.tcp(q, "127.0.0.1", port=server.dns_port, timeout=5).answer

"""Multi-perspective corroboration (BR §3.2.2.9) with real processes on loopback: the CA
and four `acmekit server perspective`s, each asking its own `acmekit dns`."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client.persist import make_record
from acmekit.protocol import dnsaccount
from acmekit.protocol.challenges import dns01_record_name, dns01_txt_value, key_authorization
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.tlsalpn import tlsalpn01_certificate
from acmekit.server.ca import issue_certificate, load_or_create_issuer, new_serial, pem_chain
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme, new_key
from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.perspectives import PerspectiveHandle, issue_certs, running_perspective
from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import stop_process
from acmekit_testkit.tcpstub import tcp_server
from acmekit_testkit.tlsalpn_responder import server_context as alpn_context

RIRS = {"p-arin": "ARIN", "p-ripe": "RIPE", "p-apnic": "APNIC", "p-lacnic": "LACNIC"}


@dataclass
class World:
    ca: ServerHandle
    ca_dns: DnsServerHandle
    perspectives: dict[str, PerspectiveHandle]
    remote_dns: dict[str, DnsServerHandle]
    http01_port: int
    tlsalpn01_port: int


def start_ca(
    stack: ExitStack, workdir: Path, state: Path, dns: DnsServerHandle, http01: int,
    perspectives: list[dict[str, str]], tlsalpn01: int = 443,
) -> ServerHandle:  # fmt: skip
    settings: dict[str, Any] = {
        "crl": {"listen": f"127.0.0.1:{free_port()}"},
        "rate_limits": {"enabled": False},
        # CAA is rechecked at every finalize, and corroborated (BR 3.2.2.9).
        "caa": {"recheck_after": 0},
        "mpic": {"enabled": True, "timeout": 8, "perspectives": perspectives},
        # The account-bound challenges, corroborated with the account context.
        "dns_persist_01": True,
        "dns_account_01": True,
        # Just-in-time dns-persist-01 waits for the corroboration too (bounded by [mpic]).
        "persist_jit_timeout": 8,
    }
    return stack.enter_context(
        running_acmekit_server(
            workdir, dns_port=dns.dns_port, http01_port=http01, tlsalpn01_port=tlsalpn01,
            state_dir=state, settings=settings,
        )
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("mpic")
    state = workdir / "ca-state"
    http01, tlsalpn01 = free_port(), free_port()
    with ExitStack() as stack:
        ca_dns = stack.enter_context(dns_server_process(workdir))
        remote_dns: dict[str, DnsServerHandle] = {}
        perspectives: dict[str, PerspectiveHandle] = {}
        for name, rir in RIRS.items():
            remote_dns[name] = stack.enter_context(dns_server_process(workdir))
            perspectives[name] = stack.enter_context(
                running_perspective(
                    workdir, state, name, rir, dns_port=remote_dns[name].dns_port,
                    http01_port=http01, tlsalpn01_port=tlsalpn01,
                )
            )  # fmt: skip
        entries = [p.settings() for p in perspectives.values()]
        ca = start_ca(stack, workdir, state, ca_dns, http01, entries, tlsalpn01)
        yield World(ca, ca_dns, perspectives, remote_dns, http01, tlsalpn01)


@pytest.fixture
async def responder(world: World) -> AsyncIterator[Http01Responder]:
    """On the port the CA and the perspectives fetch http-01 from."""
    r = Http01Responder(port=world.http01_port)
    await r.start()
    yield r
    await r.stop()


def recorded(ca: ServerHandle, identifier: str) -> list[tuple[str, list[dict[str, str]]]]:
    with sqlite3.connect(ca.state_dir / "acmekit.db") as db:
        rows = db.execute(
            "SELECT mpic_quorum, mpic_perspectives FROM authorizations "
            "WHERE identifier_value = ? AND mpic_quorum IS NOT NULL",
            (identifier,),
        ).fetchall()
    return [(q, json.loads(p)) for q, p in rows]


async def authz_after(flow: Flow, order: dict[str, Any]) -> dict[str, Any]:
    await flow.wait_for_authorizations(order)
    doc: dict[str, Any] = (await flow.get(order["authorizations"][0])).json()
    return doc


@asynccontextmanager
async def validated(
    world: World, responder: Http01Responder, name: str
) -> AsyncIterator[tuple[Flow, str, dict[str, Any]]]:
    """An account's order for `name` with http-01 answered: (flow, order URL, authz)."""
    acme = HttpRawAcme(world.ca.base_url, str(world.ca.root_path))
    try:
        flow = Flow(acme, responder)
        await flow.account()
        resp = await flow.order(name)
        assert resp.status == 201, resp.body
        await flow.solve(resp.json())
        yield flow, resp.header("location") or "", await authz_after(flow, resp.json())
    finally:
        await acme.close()


async def order_with_http01(world: World, responder: Http01Responder, name: str) -> dict[str, Any]:
    async with validated(world, responder, name) as (_, _, authz):
        return authz


async def test_all_perspectives_agree_the_authorization_is_valid(
    world: World, responder: Http01Responder
) -> None:
    async with validated(world, responder, "agree.mpic.test") as (flow, order_url, authz):
        assert authz["status"] == "valid", authz
        done = await flow.finalize(order_url, ("agree.mpic.test",))
        assert done.status == 200 and done.json()["status"] in ("valid", "processing"), done.body
    [(quorum, results)] = recorded(world.ca, "agree.mpic.test")
    passed = [r for r in results if r["outcome"] == "passed"]
    assert quorum in ("3/4", "4/4") and quorum == f"{len(passed)}/4"
    assert not [r for r in results if r["outcome"] == "failed"], results
    assert {r["rir"] for r in passed} <= set(RIRS.values()) and len({r["rir"] for r in passed}) >= 2
    log = world.ca.log.read_text()
    assert "INFO acmekit.server.mpic" in log or "mpic for authorization" in log, log
    assert f"quorum {quorum}" in log


async def test_a_lying_primary_resolver_gets_no_certificate(world: World) -> None:
    """The attacker controls only the CA's own view: its resolver serves the attacker's
    TXT for dns-01. The remote perspectives see the real zone, without it."""
    name = "victim.mpic.test"
    acme = HttpRawAcme(world.ca.base_url, str(world.ca.root_path))
    try:
        flow = Flow(acme, Http01Responder(), key=new_key())
        await flow.account()
        resp = await flow.order(name)
        order = resp.json()
        authz = (await flow.get(order["authorizations"][0])).json()
        ch = next(c for c in authz["challenges"] if c["type"] == "dns-01")
        txt = dns01_txt_value(key_authorization(ch["token"], flow.key))
        world.ca_dns.set_txt_sync(dns01_record_name(name).rstrip(".") + ".", txt)
        assert (await acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
        authz = await authz_after(flow, order)
    finally:
        await acme.close()
    assert authz["status"] == "invalid", authz
    error = authz["challenges"][0].get("error") or next(
        c["error"] for c in authz["challenges"] if "error" in c
    )
    assert error["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "remote perspectives did not corroborate" in error["detail"]
    for perspective in RIRS:
        if perspective in error["detail"]:
            break
    else:
        raise AssertionError(f"no perspective named: {error['detail']}")
    [(quorum, results)] = recorded(world.ca, name)
    assert quorum == "0/4" or quorum == "1/4" or quorum.startswith("0/"), quorum
    assert all(r["outcome"] in ("failed", "cancelled") for r in results)


async def post_raw(url: str, ctx: ssl.SSLContext) -> int:
    """POST an empty request to a perspective; the HTTP status, or 0 when the connection
    ends without an answer (the TLS handshake refused us)."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
        writer.write(
            b"POST /v1/corroborate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\n{}"
        )
        await writer.drain()
        raw = await reader.read()
        writer.close()
    except (ssl.SSLError, ConnectionError):
        return 0
    return int(raw.split()[1]) if raw else 0


def client_with(root: Path, chain: bytes | None, key: Any, workdir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(root))
    if chain is not None:
        pem, key_pem = workdir / "client.pem", workdir / "client.key"
        pem.write_bytes(chain)
        key_pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx.load_cert_chain(str(pem), str(key_pem))
    return ctx


async def test_only_the_cas_client_certificate_is_answered(world: World, tmp_path: Path) -> None:
    """No client certificate: the handshake fails. A subscriber certificate from the same
    root (its extendedKeyUsage allows clientAuth): 403. The CA's own: 400 to `{}`."""
    url = world.perspectives["p-arin"].url
    assert await post_raw(url, client_with(world.ca.root_path, None, None, tmp_path)) == 0
    now = datetime.now(UTC)
    issuer = load_or_create_issuer(world.ca.state_dir, now)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    subscriber = issue_certificate(
        issuer, csr, [Identifier(IdentifierType.DNS, "client.mpic.test")],
        serial=new_serial(), not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=1),
    )  # fmt: skip
    chain = pem_chain(subscriber, issuer).encode()
    ctx = client_with(world.ca.root_path, chain, key, tmp_path)
    assert await post_raw(url, ctx) == 403
    own = ssl.create_default_context(cafile=str(world.ca.root_path))
    own.load_cert_chain(
        str(world.ca.state_dir / "mpic-client.pem"), str(world.ca.state_dir / "mpic-client.key")
    )
    assert await post_raw(url, own) == 400


async def test_impostor_perspectives_are_not_counted(
    world: World, responder: Http01Responder, tmp_path: Path
) -> None:
    """Two of four perspectives are impostors: one with a certificate from another root,
    one with a certificate of our root for another perspective. Counted, they would make
    the quorum (3/4); they are not, so the validation fails."""
    state = tmp_path / "ca2-state"
    state.mkdir(mode=0o700)
    for stem in ("root", "intermediate", "mpic-client"):
        for ext in ("pem", "key"):
            shutil.copy(world.ca.state_dir / f"{stem}.{ext}", state / f"{stem}.{ext}")
    foreign = issue_certs(tmp_path / "foreign-ca", "p-foreign", tmp_path / "foreign-certs")
    misnamed = issue_certs(state, "p-someone-else", tmp_path / "misnamed-certs")
    honest = [world.perspectives["p-arin"].settings(), world.perspectives["p-ripe"].settings()]
    with ExitStack() as stack:
        impostors = [
            stack.enter_context(
                running_perspective(
                    tmp_path, state, name, rir, dns_port=world.remote_dns["p-arin"].dns_port,
                    http01_port=world.http01_port, certs_dir=certs,
                )
            )
            for name, rir, certs in (
                ("p-foreign", "APNIC", foreign), ("p-misnamed", "AFRINIC", misnamed),
            )
        ]  # fmt: skip
        ca = start_ca(
            stack, tmp_path, state, world.ca_dns, world.http01_port,
            honest + [p.settings() for p in impostors],
        )  # fmt: skip
        other = World(
            ca, world.ca_dns, world.perspectives, world.remote_dns, world.http01_port,
            world.tlsalpn01_port,
        )  # fmt: skip
        authz = await order_with_http01(other, responder, "impostors.mpic.test")
    assert authz["status"] == "invalid", authz
    [(_, results)] = recorded(ca, "impostors.mpic.test")
    by_name = {r["name"]: r for r in results}
    assert by_name["p-foreign"]["outcome"] == "failed"
    assert "TLS failed" in by_name["p-foreign"]["detail"], results
    assert by_name["p-misnamed"]["outcome"] == "failed"
    assert by_name["p-misnamed"]["detail"] == "its certificate is not that of this perspective"
    # The impostors never saw a request they would answer: the CA stopped at the handshake.
    for p in impostors:
        assert "http-01 for impostors.mpic.test" not in p.log.read_text()


async def test_tlsalpn01_is_corroborated(world: World) -> None:
    name = "alpn.mpic.test"
    acme = HttpRawAcme(world.ca.base_url, str(world.ca.root_path))
    try:
        flow = Flow(acme, Http01Responder(), key=new_key())
        await flow.account()
        order = (await flow.order(name)).json()
        authz = (await flow.get(order["authorizations"][0])).json()
        ch = next(c for c in authz["challenges"] if c["type"] == "tls-alpn-01")
        ident = Identifier(IdentifierType.DNS, name)
        cert_key = ec.generate_private_key(ec.SECP256R1())
        cert = tlsalpn01_certificate(ident, key_authorization(ch["token"], flow.key), cert_key)
        ctx = alpn_context(cert, cert_key, ["acme-tls/1"])
        async with tcp_server(ssl_context=ctx, port=world.tlsalpn01_port):
            assert (await acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
            authz = await authz_after(flow, order)
    finally:
        await acme.close()
    assert authz["status"] == "valid", authz
    [(quorum, results)] = recorded(world.ca, name)
    assert quorum in ("3/4", "4/4") and not [r for r in results if r["outcome"] == "failed"]


@asynccontextmanager
async def account_bound_order(
    world: World, name: str, ctype: str
) -> AsyncIterator[tuple[HttpRawAcme, Flow, dict[str, Any], dict[str, Any]]]:
    """A new account's order for `name`: (acme, flow, order, the `ctype` challenge)."""
    acme = HttpRawAcme(world.ca.base_url, str(world.ca.root_path))
    try:
        flow = Flow(acme, Http01Responder(), key=new_key())
        await flow.account()
        order = (await flow.order(name)).json()
        authz = (await flow.get(order["authorizations"][0])).json()
        yield acme, flow, order, next(c for c in authz["challenges"] if c["type"] == ctype)
    finally:
        await acme.close()


async def persist_record(acme: HttpRawAcme, flow: Flow, name: str) -> tuple[str, str]:
    """The standing dns-persist-01 record of the flow's account for `name`: (owner, value)."""
    meta = (await acme.request("GET", f"{acme.base}/directory")).json()["meta"]
    record = make_record(
        name, account_url=flow.kid, account_key=flow.key,
        account_hash_prefix=meta["accountHashPrefix"], issuers=meta["issuerDomainNames"],
    )  # fmt: skip
    return f"{record.name}.", record.value


def publish_everywhere(world: World, owner: str, value: str) -> None:
    """In the zone as everyone sees it: the CA's resolver and every perspective's."""
    for dns in (world.ca_dns, *world.remote_dns.values()):
        dns.set_txt_sync(owner, value)


async def test_dns_persist01_is_corroborated(world: World) -> None:
    name = "persist.mpic.test"
    async with account_bound_order(world, name, "dns-persist-01") as (acme, flow, order, ch):
        publish_everywhere(world, *await persist_record(acme, flow, name))
        assert (await acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
        authz = await authz_after(flow, order)
    assert authz["status"] == "valid", authz
    [(quorum, results)] = recorded(world.ca, name)
    assert quorum in ("3/4", "4/4") and not [r for r in results if r["outcome"] == "failed"]
    for p in world.perspectives.values():
        assert f"dns-persist-01 for {name}: fail" not in p.log.read_text()


async def test_dns_account01_is_corroborated(world: World) -> None:
    name = "account.mpic.test"
    async with account_bound_order(world, name, "dns-account-01") as (acme, flow, order, ch):
        owner = dnsaccount.record_name(name, flow.kid) + "."
        value = dnsaccount.txt_value(key_authorization(ch["token"], flow.key))
        publish_everywhere(world, owner, value)
        assert (await acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
        authz = await authz_after(flow, order)
    assert authz["status"] == "valid", authz
    [(quorum, results)] = recorded(world.ca, name)
    assert quorum in ("3/4", "4/4") and not [r for r in results if r["outcome"] == "failed"]


async def test_a_persist_record_only_the_primary_sees_gets_no_certificate(world: World) -> None:
    """The attacker's standing record is in the CA's own view alone; the remote
    perspectives check the same account context against the real zone, without it."""
    name = "persist-victim.mpic.test"
    async with account_bound_order(world, name, "dns-persist-01") as (acme, flow, order, ch):
        world.ca_dns.set_txt_sync(*await persist_record(acme, flow, name))
        assert (await acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
        authz = await authz_after(flow, order)
    assert authz["status"] == "invalid", authz
    error = next(c["error"] for c in authz["challenges"] if "error" in c)
    assert error["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "remote perspectives did not corroborate" in error["detail"], error
    # They looked and found no record (not: could not read the request).
    assert "_validation-persist." + name in error["detail"], error
    [(_, results)] = recorded(world.ca, name)
    assert all(r["outcome"] in ("failed", "cancelled") for r in results)


async def test_just_in_time_validation_is_corroborated(world: World) -> None:
    """draft-ietf-acme-dns-persist-02 §4.4: a standing record makes a new order's
    authorization valid at once only with the remote perspectives' quorum; a record only
    the CA's own resolver sees leaves the authorization pending, its challenges open."""
    first, seen, hidden = "jit-first.mpic.test", "jit-seen.mpic.test", "jit-hidden.mpic.test"
    async with account_bound_order(world, first, "dns-persist-01") as (acme, flow, order, ch):
        publish_everywhere(world, *await persist_record(acme, flow, first))
        assert (await acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
        assert (await authz_after(flow, order))["status"] == "valid"

        publish_everywhere(world, *await persist_record(acme, flow, seen))
        resp = await flow.order(seen)
        assert resp.status == 201 and resp.json()["status"] == "ready", resp.body
        [(quorum, results)] = recorded(world.ca, seen)
        assert quorum in ("3/4", "4/4") and not [r for r in results if r["outcome"] == "failed"]

        world.ca_dns.set_txt_sync(*await persist_record(acme, flow, hidden))
        resp = await flow.order(hidden)
        assert resp.status == 201 and resp.json()["status"] == "pending", resp.body
        authz = (await flow.get(resp.json()["authorizations"][0])).json()
        assert authz["status"] == "pending", authz
        assert {c["status"] for c in authz["challenges"]} == {"pending"}
    # The refused shortcut is logged with the problem the quorum gave, and nothing is
    # recorded on the authorization, which the client may still validate by the challenge.
    assert not recorded(world.ca, hidden)
    log = world.ca.log.read_text()
    line = next(ln for ln in log.splitlines() if "just-in-time" in ln and hidden in ln)
    assert "stays pending: urn:ietf:params:acme:error:unauthorized" in line, line


async def test_one_perspective_down_passes_two_down_fails(
    world: World, responder: Http01Responder
) -> None:
    stop_process(world.perspectives["p-lacnic"].proc)
    async with validated(world, responder, "one-down.mpic.test") as (flow, order_url, authz):
        assert authz["status"] == "valid", authz
        [(quorum, results)] = recorded(world.ca, "one-down.mpic.test")
        assert quorum == "3/4"
        down = next(r for r in results if r["name"] == "p-lacnic")
        assert down["outcome"] == "failed" and "unreachable" in down["detail"]

        # Validated with three; at finalize CAA is rechecked, and two cannot corroborate.
        stop_process(world.perspectives["p-apnic"].proc)
        refused = await flow.finalize(order_url, ("one-down.mpic.test",))
        assert refused.status == 403 and refused.problem_type == "unauthorized", refused.body
        assert "did not corroborate the CAA recheck" in refused.json()["detail"]

    authz = await order_with_http01(world, responder, "two-down.mpic.test")
    assert authz["status"] == "invalid", authz
    error = next(c["error"] for c in authz["challenges"] if "error" in c)
    assert error["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "2 of 4 failed, 3 must agree from at least 2 RIRs" in error["detail"], error
    assert "p-lacnic (LACNIC): unreachable" in error["detail"]
    assert "p-apnic (APNIC): unreachable" in error["detail"]

"""The CA logs before it issues (RFC 6962 §3): `acmekit server` in-process with CT on,
against real `acmekit ct` logs served on loopback from the test's event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.ct.app import CtApp
from acmekit.protocol import ct
from acmekit.protocol.ctpolicy import check_embedded, corresponds, judge_checks
from acmekit.protocol.jose import b64e
from acmekit.server.config import CtSettings, Limit, RateLimits, ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, RawAcme
from acmekit_testkit.ctlog import LogInLoop, ca_hierarchy, ct_log_in_loop
from acmekit_testkit.ports import free_port

Middleware = Callable[[CtApp], Any]


def tampering(app: CtApp) -> Any:
    """A log whose add-pre-chain answers carry a signature over another timestamp."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("path", "").endswith("add-pre-chain"):

            async def altered(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.body" and message.get("body"):
                    doc = json.loads(message["body"])
                    doc["timestamp"] += 1
                    message = {**message, "body": json.dumps(doc).encode()}
                elif message["type"] == "http.response.start":
                    headers = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                    message = {**message, "headers": headers}
                await send(message)

            await app(scope, receive, altered)
            return
        await app(scope, receive, send)

    return asgi


class Holding:
    """A log that answers add-pre-chain only once `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.asked = asyncio.Event()

    def __call__(self, app: CtApp) -> Any:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("path", "").endswith("add-pre-chain"):
                self.asked.set()
                await self.release.wait()
            await app(scope, receive, send)

        return asgi


class Logs:
    def __init__(self, tmp_path: Path, stack: AsyncExitStack) -> None:
        self.tmp_path = tmp_path
        self.stack = stack
        self.roots = tmp_path / "ca" / "root.pem"
        self.running: list[LogInLoop] = []

    def hierarchy(self) -> None:
        """The CA's file hierarchy first: the logs accept its root."""
        ca_hierarchy(self.tmp_path / "ca")

    async def start(self, name: str, wrap: Middleware | None = None) -> LogInLoop:
        running = await self.stack.enter_async_context(
            ct_log_in_loop(self.tmp_path / name, self.roots, wrap=wrap)
        )
        self.running.append(running)
        return running

    def down(self, name: str) -> Path:
        """A log list naming a log nobody serves (a port with no listener)."""
        (self.tmp_path / name).mkdir()
        live = self.running[0].log_list
        doc = json.loads(live.read_text())
        doc["operators"][0]["name"] = f"{name} operator"
        log = doc["operators"][0]["logs"][0]
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        log.update(
            description=f"{name} (down)",
            key=ct.b64(der),
            log_id=ct.b64(ct.log_id(key)),
            url=f"http://127.0.0.1:{free_port()}/",
        )
        path = self.tmp_path / name / "loglist.json"
        path.write_text(json.dumps(doc))
        return path


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


@pytest.fixture
def logs(tmp_path: Path, stack: AsyncExitStack) -> Logs:
    return Logs(tmp_path, stack)


async def ca_with(
    config: ServerConfig, lists: list[Path], stack: AsyncExitStack, ct_timeout: float = 5.0
) -> Assembly:
    ct_on = replace(
        config,
        ct=CtSettings(log_lists=tuple(str(p) for p in lists), timeout=ct_timeout),
        finalize_wait=0.5,
    )
    assembly = assemble(ct_on)

    async def close() -> None:
        await assembly.app.close()
        assembly.store.engine.dispose()

    stack.push_async_callback(close)
    return assembly


async def finished(flow: Flow, assembly: Assembly, order_url: str) -> dict[str, Any]:
    await assembly.app.authority.drain()
    doc: dict[str, Any] = (await flow.get(order_url)).json()
    return doc


async def ordered(flow: Flow, name: str) -> tuple[str, dict[str, Any]]:
    """An order for `name`, ready and finalized (its outcome may still be coming)."""
    await flow.account()
    resp = await flow.order(name)
    assert resp.status == 201, resp.body
    url = resp.header("location") or ""
    await flow.solve(resp.json())
    done = await flow.finalize(url, (name,))
    assert done.status == 200, done.body
    return url, done.json()


def chain_of(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


@pytest.mark.parametrize("lint", [True, False], ids=["lint", "no-lint"])
async def test_scts_verified_and_embedded(
    ca_config: ServerConfig, logs: Logs, stack: AsyncExitStack, responder: Any, lint: bool
) -> None:
    logs.hierarchy()
    a, b = await logs.start("log-a"), await logs.start("log-b")
    config = replace(ca_config, lint=replace(ca_config.lint, enabled=lint))
    ca = await ca_with(config, [a.log_list, b.log_list], stack)
    flow = Flow(RawAcme(ca.app), responder)
    url, _ = await ordered(flow, "logged.ct.test")
    order = await finished(flow, ca, url)
    assert order["status"] == "valid", order
    leaf, intermediate = chain_of((await flow.get(order["certificate"])).body)
    both = ct.LogList(
        ct.LogList.loads(a.log_list.read_text()).logs
        + ct.LogList.loads(b.log_list.read_text()).logs
    )
    checks = check_embedded(leaf, intermediate, both)
    assert sorted(c.log.url for c in checks if c.log) == sorted([a.url, b.url])
    assert all(c.valid for c in checks)
    assert judge_checks(checks, leaf).compliant
    rec = ca.store.certificates.certificate_by_serial(format(leaf.serial_number, "x"))
    assert rec is not None and rec.precert is not None
    precert = x509.load_der_x509_certificate(rec.precert)
    assert corresponds(precert, leaf)
    # The final certificate went to the logs too (add-chain, best effort): each log now
    # holds the precertificate entry and the certificate entry.
    for log in (a, b):
        assert log.app.log.sequence_once() == 2


async def test_bad_signature_is_not_counted(
    ca_config: ServerConfig, logs: Logs, stack: AsyncExitStack, responder: Any
) -> None:
    logs.hierarchy()
    a = await logs.start("log-a")
    bad = await logs.start("log-bad", wrap=tampering)
    c = await logs.start("log-c")
    ca = await ca_with(ca_config, [a.log_list, bad.log_list, c.log_list], stack)
    flow = Flow(RawAcme(ca.app), responder)
    url, _ = await ordered(flow, "tampered.ct.test")
    order = await finished(flow, ca, url)
    assert order["status"] == "valid", order
    leaf, _ = chain_of((await flow.get(order["certificate"])).body)
    embedded = {sct.log_id for sct in _scts(leaf)}
    assert embedded == {a.app.log.log_id, c.app.log.log_id}


async def test_a_log_that_does_not_answer_in_time_leaves_the_others_counted(
    ca_config: ServerConfig, logs: Logs, stack: AsyncExitStack, responder: Any
) -> None:
    """The logs' answers are read in turn by one deadline: the first log listed holds its
    answer past the timeout, and the two after it, which answered meanwhile, still count
    (and, at the timeout, a log that has not answered is failed by name)."""
    logs.hierarchy()
    holding = Holding()
    held = await logs.start("log-held", wrap=holding)
    a = await logs.start("log-a")
    c = await logs.start("log-c")
    lists = [held.log_list, a.log_list, c.log_list]
    ca = await ca_with(ca_config, lists, stack, ct_timeout=1.0)
    flow = Flow(RawAcme(ca.app), responder)
    try:
        url, _ = await ordered(flow, "slow-log.ct.test")
        order = await finished(flow, ca, url)
    finally:
        holding.release.set()
    assert holding.asked.is_set()
    assert order["status"] == "valid", order
    leaf, _ = chain_of((await flow.get(order["certificate"])).body)
    assert {sct.log_id for sct in _scts(leaf)} == {a.app.log.log_id, c.app.log.log_id}


async def test_too_few_scts_fail_the_order_naming_the_logs(
    ca_config: ServerConfig, logs: Logs, stack: AsyncExitStack, responder: Any
) -> None:
    logs.hierarchy()
    a = await logs.start("log-a")
    bad = await logs.start("log-bad", wrap=tampering)
    down = logs.down("log-down")
    ca = await ca_with(ca_config, [a.log_list, bad.log_list, down], stack)
    flow = Flow(RawAcme(ca.app), responder)
    url, _ = await ordered(flow, "refused.ct.test")
    order = await finished(flow, ca, url)
    assert order["status"] == "invalid"
    assert "certificate" not in order
    detail = order["error"]["detail"]
    assert "1 verified" in detail
    assert "log-down (down)" in detail and "does not verify" in detail
    assert bad.url in detail


async def test_an_issuance_that_fails_gives_its_rate_limit_tokens_back(
    ca_config: ServerConfig, logs: Logs, stack: AsyncExitStack, responder: Any
) -> None:
    """The issuance limits are taken at finalize; with every CT log down the order fails,
    and the tokens come back: a limit of one certificate per name set still lets the
    subscriber finalize again, and again, once the logs are back."""
    logs.hierarchy()
    await logs.start("log-live")
    down = logs.down("log-gone")
    one = Limit(1, timedelta(days=7))
    limited = replace(
        ca_config, rate_limits=RateLimits(duplicate_certificates=one, certificates_per_domain=one)
    )
    ca = await ca_with(limited, [down], stack)
    flow = Flow(RawAcme(ca.app), responder)
    for _ in range(3):
        url, _ = await ordered(flow, "refund.ct.test")  # finalize answered 200, not 429
        order = await finished(flow, ca, url)
        assert order["status"] == "invalid", order
        assert "refund.ct.test" not in str(order.get("certificate", ""))


async def test_a_revoked_precertificate_is_on_the_crl(
    ca_config: ServerConfig, logs: Logs, stack: AsyncExitStack, responder: Any
) -> None:
    logs.hierarchy()
    a = await logs.start("log-a")
    ca = await ca_with(ca_config, [a.log_list, logs.down("log-down")], stack)
    flow = Flow(RawAcme(ca.app), responder)
    url, _ = await ordered(flow, "precert-only.ct.test")
    assert (await finished(flow, ca, url))["status"] == "invalid"
    # The precertificate was signed (and logged in log-a): it counts as issued.
    (entry,) = [_leaf(a, i) for i in range(a.app.log.sequence_once())]
    precert = x509.load_der_x509_certificate(entry)
    assert ct.is_precertificate(precert)
    directory = await flow.acme.directory()
    resp = await flow.acme.post(
        directory["revokeCert"],
        {"certificate": b64e(precert.public_bytes(serialization.Encoding.DER))},
        flow.key,
        flow.kid,
    )
    assert resp.status == 200, resp.body
    listed = [
        crl.get_revoked_certificate_by_serial_number(precert.serial_number)
        for shard in range(ca_config.crl.shards)
        if (der := ca.crl.der(shard)) is not None
        for crl in [x509.load_der_x509_crl(der)]
    ]
    assert any(r is not None for r in listed)


async def test_a_crash_between_precertificate_and_certificate_is_recovered(
    ca_config: ServerConfig, logs: Logs, stack: AsyncExitStack, responder: Any
) -> None:
    holding = Holding()
    logs.hierarchy()
    a = await logs.start("log-a")
    b = await logs.start("log-b", wrap=holding)
    config = replace(ca_config, stale_after=0.0)
    first = await ca_with(config, [a.log_list, b.log_list], stack)
    flow = Flow(RawAcme(first.app), responder)
    url, _ = await ordered(flow, "crashed.ct.test")
    await holding.asked.wait()
    # The process "dies" while a log holds its answer: the precertificate is signed and
    # kept, the order claimed, no certificate.
    for task in list(first.app.authority._tasks):
        task.cancel()
    await first.app.authority.drain()
    order_id = url.rsplit("/", 1)[-1]
    (kept,) = [
        r
        for r in [first.store.certificates.precert_reservation(order_id)]
        if r is not None and r.precert is not None
    ]
    holding.release.set()
    second = await ca_with(config, [a.log_list, b.log_list], stack)
    await second.app.authority.recover(lambda account_id: f"https://ca.test/acct/{account_id}")
    await second.app.authority.drain()
    order = (await Flow(RawAcme(second.app), responder, flow.key, flow.kid).get(url)).json()
    assert order["status"] == "valid", order
    leaf, _ = chain_of((await flow.get(order["certificate"])).body)
    assert format(leaf.serial_number, "x") == kept.serial
    assert corresponds(x509.load_der_x509_certificate(kept.precert or b""), leaf)
    assert len(_scts(leaf)) == 2


async def test_a_key_in_a_token_signs_precertificate_and_certificate(
    ca_config: ServerConfig,
    logs: Logs,
    stack: AsyncExitStack,
    responder: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pkcs11

    from acmekit.server.ca import create_external_hierarchy
    from acmekit.server.config import HsmSettings
    from acmekit.server.hsm import TokenAddress, generate_key
    from acmekit_testkit.softhsm import softhsm_token

    token = softhsm_token(tmp_path / "hsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
    pkcs11.lib(token.module).reinitialize()
    public = generate_key(
        TokenAddress(token.module, token.label, "intermediate"), token.pin, "ec256"
    )
    state = ca_config.state_dir
    create_external_hierarchy(state, tmp_path / "offline-root.key", public, datetime.now(UTC))
    a, b = await logs.start("log-a"), await logs.start("log-b")
    settings = HsmSettings(token.module, token.label, "intermediate", pin_env="UNUSED")
    config = replace(
        ca_config,
        hsm=settings,
        ct=CtSettings(log_lists=(str(a.log_list), str(b.log_list)), timeout=5.0),
    )
    ca = assemble(config, hsm_pin=token.pin)
    try:
        flow = Flow(RawAcme(ca.app), responder)
        url, _ = await ordered(flow, "token.ct.test")
        order = await finished(flow, ca, url)
        assert order["status"] == "valid", order
        leaf, intermediate = chain_of((await flow.get(order["certificate"])).body)
        leaf.verify_directly_issued_by(intermediate)
        assert intermediate.public_key() == public
        assert {s.log_id for s in _scts(leaf)} == {a.app.log.log_id, b.app.log.log_id}
    finally:
        await ca.app.close()
        ca.store.engine.dispose()


def _scts(cert: x509.Certificate) -> list[ct.SignedCertificateTimestamp]:
    from acmekit.protocol.ctpolicy import embedded_scts

    return embedded_scts(cert)


def _leaf(log: LogInLoop, index: int) -> bytes:
    """The certificate (or precertificate) an entry of `log` was submitted with."""
    (stored,) = log.app.log.entries(index, index)
    entry = ct.parse_merkle_tree_leaf(stored.leaf_input)
    if entry.entry.entry_type is ct.LogEntryType.PRECERT_ENTRY:
        return _pre_certificate(stored.extra_data)
    return entry.entry.body


def _pre_certificate(extra_data: bytes) -> bytes:
    """PrecertChainEntry (RFC 6962 §4.6): the precertificate first."""
    r = ct.Reader(extra_data)
    return r.opaque(3)

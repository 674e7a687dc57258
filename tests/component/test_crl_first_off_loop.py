"""A shard's first CRL, asked for at the CRL listener before any is stored (before the
start's refresh has run), is made in a thread, not on the event loop, and once however
many ask for it at a time (crl.py, `CrlApp`, `CrlPublisher.first`)."""

from __future__ import annotations

import asyncio
import shutil
import threading
from dataclasses import replace
from typing import Any

import pytest
from cryptography import x509

from acmekit.server import crl as crl_module
from acmekit.server import lint
from acmekit.server.crl import CrlApp
from acmekit.server.lint import CrlLintProcess
from acmekit.server.run import Assembly


async def _get(app: CrlApp, path: str) -> tuple[int, bytes]:
    """One GET through the listener's ASGI app: its status and body."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode()}
    await app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


@pytest.fixture
def build_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each CRL was built in."""
    threads: list[int] = []
    plain = crl_module.build_crl

    def recorded(*args: Any, **kwargs: Any) -> bytes:
        threads.append(threading.get_ident())
        return plain(*args, **kwargs)

    monkeypatch.setattr(crl_module, "build_crl", recorded)
    return threads


async def test_a_shards_first_crl_is_made_off_the_loop_once(
    ca: Assembly, build_threads: list[int]
) -> None:
    assert ca.crl is not None
    app = CrlApp(ca.crl)
    assert ca.store.certificates.crl(1) is None
    answers = await asyncio.gather(*(_get(app, "/crl/1.crl") for _ in range(3)))
    stored = ca.store.certificates.crl(1)
    assert stored is not None and stored.number == 1
    assert answers == [(200, stored.der)] * 3
    assert len(build_threads) == 1
    assert build_threads[0] != threading.get_ident()  # the loop's thread
    idp = x509.load_der_x509_crl(stored.der).extensions.get_extension_for_class(
        x509.IssuingDistributionPoint
    )
    assert idp.value.full_name == [x509.UniformResourceIdentifier(ca.crl.url_for(1))]
    # Stored now: served as it is, nothing built again.
    assert await _get(app, "/crl/1.crl") == (200, stored.der)
    assert len(build_threads) == 1


async def test_a_crl_is_published_when_its_lint_process_cannot_start(
    ca: Assembly, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRL's findings are only logged: a lint process that cannot start (a broken
    install; here the interpreter is `false`) must not keep the shard from its CRL."""
    assert ca.crl is not None and ca.crl.linter is not None and ca.crl.linter.enabled
    process = CrlLintProcess()
    ca.crl.linter = replace(ca.crl.linter, crl_process=process)
    false = shutil.which("false")
    assert false is not None
    monkeypatch.setattr(lint.sys, "executable", false)
    try:
        status, body = await _get(CrlApp(ca.crl), "/crl/2.crl")
    finally:
        process.close()
    stored = ca.store.certificates.crl(2)
    assert stored is not None and stored.number == 1
    assert (status, body) == (200, stored.der)
    assert process.started == 2  # once, then once more


async def test_first_crl_requests_leave_the_loops_worker_threads_free(ca: Assembly) -> None:
    """Requests for shards with no CRL stored yet wait while another CRL is being made
    (here the start's refresh, held by the test): they wait in the listener's own
    thread, not in the loop's default executor, whose few threads the CA's database
    writes on PostgreSQL and a token's signatures need meanwhile."""
    assert ca.crl is not None
    app = CrlApp(ca.crl)
    with ca.crl._building:  # a CRL being made, as by the start's refresh
        waiting = [asyncio.ensure_future(_get(app, f"/crl/{n % 4}.crl")) for n in range(12)]
        for _ in range(10):
            await asyncio.sleep(0)
        # Guards a hang, asserts no timing: with the executor's threads all parked
        # behind the CRL being made, this would wait for it.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 30) == "free"
    answers = await asyncio.gather(*waiting)
    for n, (status, body) in enumerate(answers):
        stored = ca.store.certificates.crl(n % 4)
        assert stored is not None and stored.number == 1
        assert (status, body) == (200, stored.der)

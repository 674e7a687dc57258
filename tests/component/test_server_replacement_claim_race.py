"""Two processes of one CA take one certificate's replacement (RFC 9773 §5) at once.

The claim on the certificate (`replaced_by`) and the replacing order are committed
together: a claim whose order another process has not committed yet is not an order
that failed, and a second order naming the same certificate is refused with
alreadyReplaced, whichever of the two is written first. Losing is expected, not a fault:
on PostgreSQL no statement of the loser's fails (the server would log an ERROR for it)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509

from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.ari import cert_id_of
from acmekit.server.config import ServerConfig
from acmekit.server.repos.base import _PostgresStatements
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme


@pytest.fixture
async def two_processes(ca_config: ServerConfig) -> AsyncIterator[tuple[Assembly, Assembly]]:
    first = assemble(ca_config)
    second = assemble(ca_config)
    yield first, second
    for assembly in (first, second):
        await assembly.app.close()
        assembly.store.engine.dispose()


class _HeldBeforeWrite:
    """A store's `add_order` that waits, once reached, until let go: the request is
    between its checks and its order's write."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.reached = threading.Event()
        self.go = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.reached.set()
        assert self.go.wait(30)
        return self._real(*args, **kwargs)


def _written(assembly: Assembly, cert_id: str) -> tuple[int, ...]:
    """The orders replacing the certificate, the added name's authorizations, the
    authorizations marked in renewal by an order other than the certificate's claim."""
    with assembly.store.db.once() as c:
        row = c.one(
            "SELECT (SELECT COUNT(*) FROM orders WHERE replaces = ?), "
            "(SELECT COUNT(*) FROM authorizations WHERE identifier_value = ?), "
            "(SELECT COUNT(*) FROM authorizations WHERE renewal_order_id IS NOT NULL "
            "AND renewal_order_id <> (SELECT replaced_by FROM certificates WHERE "
            "replaced_by IS NOT NULL))",
            (cert_id, "added.race.replace.test"),
        )
    return tuple(int(n) for n in row)


async def test_a_replacement_taken_by_two_processes_at_once_is_one_order(
    two_processes: tuple[Assembly, Assembly],
    responder: Http01Responder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = two_processes
    failed: list[str] = []  # the errors PostgreSQL answered any statement with
    real_failed = _PostgresStatements._failed

    def failing(statements: _PostgresStatements, res: Any) -> Exception:
        failed.append(bytes(res.error_message).decode())
        return real_failed(statements, res)

    monkeypatch.setattr(_PostgresStatements, "_failed", failing)
    flow = Flow(RawAcme(first.app), responder)
    _, issued = await flow.issue("race.replace.test")
    leaf = x509.load_pem_x509_certificates((await flow.get(issued["certificate"])).body)[0]
    cert_id = str(cert_id_of(leaf))
    account = first.store.accounts.account(flow.kid.rsplit("/", 1)[-1])
    assert account is not None
    # A name beside the renewed one: each order makes a new authorization for it.
    names = ("race.replace.test", "added.race.replace.test")
    idents = [{"type": "dns", "value": name} for name in names]
    payload = {"identifiers": idents, "replaces": cert_id}

    held = _HeldBeforeWrite(first.store.orders.add_order)
    first.store.orders.add_order = held  # type: ignore[method-assign]
    outcomes: list[object] = []

    def in_first() -> None:
        try:
            outcomes.append(first.app.authority.new_order(account, payload))
        except AcmeError as exc:
            outcomes.append(exc.problem.type)
        finally:
            held.reached.set()  # refused before its write: nothing to wait for

    thread = threading.Thread(target=in_first)
    thread.start()
    try:
        assert held.reached.wait(30)
        try:
            outcomes.append(second.app.authority.new_order(account, payload))
        except AcmeError as exc:
            outcomes.append(exc.problem.type)
    finally:
        held.go.set()
        thread.join(30)
    refused = [o for o in outcomes if o == ProblemType.ALREADY_REPLACED]
    assert len(outcomes) == 2 and len(refused) == 1, outcomes
    assert failed == []
    # The refused order wrote nothing: not its new authorization, not its marks.
    assert _written(first, cert_id) == (1, 1, 0)

"""An order's poll (RFC 8555 §7.1.3) answers what the full read of the order gives, in
every state an order reaches around finalize: the poll of a decided order reads no
authorization, and its status and error must still be those §7.1.6 derives from the
whole order. Each state is made on the store as the CA leaves it (or as a peer CA
sharing the database would), on both backends; the poll's body is compared, byte for
byte, with the order read with its authorizations and written the same way."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from acmekit.database import to_us
from acmekit.server import render
from acmekit.server.render import Urls
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import BASE, Flow

ERROR = {"type": "urn:ietf:params:acme:error:badCSR", "detail": 'a "bad" CSR\n', "status": 400}

# RFC 8555 §7.1.3: the fields of an order; `certificate` only once valid.
_REQUIRED = {"status", "expires", "identifiers", "authorizations", "finalize"}


def _set(ca: Assembly, table: str, assignment: str, params: tuple[Any, ...]) -> None:
    with ca.store.db.raw() as c:
        assert c.run(f"UPDATE {table} SET {assignment}", params) >= 1


def _past(ca: Assembly) -> int:
    return to_us(ca.app.authority.now() - timedelta(days=1))


async def _poll_matches_full_read(ca: Assembly, flow: Flow, order_url: str) -> dict[str, Any]:
    resp = await flow.get(order_url)
    assert resp.status == 200, resp.body
    doc = json.loads(resp.body)  # valid JSON
    order_id = order_url.rsplit("/", 1)[-1]
    authority = ca.app.authority
    account = ca.store.accounts.account(flow.kid.rsplit("/", 1)[-1])
    assert account is not None
    full = authority.owned_order_view(account, order_id)
    assert resp.body == render.order_json(Urls(BASE), full)
    assert set(doc) >= _REQUIRED
    assert ("certificate" in doc) == (doc["status"] == "valid")
    assert (resp.header("retry-after") is not None) == (doc["status"] == "processing")
    return dict(doc)


async def _issued(flow: Flow, name: str) -> tuple[str, dict[str, Any]]:
    await flow.account()
    return await flow.issue(name)


async def _ordered(flow: Flow, name: str, solve: bool) -> tuple[str, dict[str, Any]]:
    await flow.account()
    resp = await flow.order(name)
    assert resp.status == 201, resp.body
    order = resp.json()
    if solve:
        await flow.solve(order)
    return resp.header("location") or "", order


def _order_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _authz_id(order: dict[str, Any]) -> str:
    return str(order["authorizations"][0]).rsplit("/", 1)[-1]


# (name, issued first?, solved?, change made on the store, expected status, error?)
Change = Callable[[Assembly, str, dict[str, Any]], None]
CASES: list[tuple[str, bool, bool, Change, str, bool]] = [
    ("pending", False, False, lambda ca, o, d: None, "pending", False),
    ("ready", False, True, lambda ca, o, d: None, "ready", False),
    (
        "processing",
        False,
        True,
        lambda ca, o, d: _set(ca, "orders", "finalize_started = ? WHERE id = ?", (1, o)),
        "processing",
        False,
    ),
    (
        "processing-expired",
        False,
        True,
        lambda ca, o, d: _set(
            ca, "orders", "finalize_started = ?, expires = ? WHERE id = ?", (1, _past(ca), o)
        ),
        "processing",
        False,
    ),
    (
        "finalize-failed",
        False,
        True,
        lambda ca, o, d: _set(
            ca, "orders", "finalize_started = ?, error = ? WHERE id = ?", (1, json.dumps(ERROR), o)
        ),
        "invalid",
        True,
    ),
    (
        "error-no-claim",
        False,
        False,
        lambda ca, o, d: _set(ca, "orders", "error = ? WHERE id = ?", (json.dumps(ERROR), o)),
        "invalid",
        True,
    ),
    (
        "ready-expired",
        False,
        True,
        lambda ca, o, d: _set(ca, "orders", "expires = ? WHERE id = ?", (_past(ca), o)),
        "invalid",
        False,
    ),
    (
        "authz-deactivated",
        False,
        True,
        lambda ca, o, d: _set(
            ca, "authorizations", "stored_status = ? WHERE id = ?", ("deactivated", _authz_id(d))
        ),
        "invalid",
        False,
    ),
    (
        "authz-failed",
        False,
        False,
        lambda ca, o, d: _set(
            ca,
            "challenges",
            "status = ?, error = ? WHERE authz_id = ?",
            ("invalid", json.dumps(ERROR), _authz_id(d)),
        ),
        "invalid",
        True,
    ),
    ("valid", True, True, lambda ca, o, d: None, "valid", False),
    (
        "valid-expired",
        True,
        True,
        lambda ca, o, d: _set(ca, "orders", "expires = ? WHERE id = ?", (_past(ca), o)),
        "valid",
        False,
    ),
    (
        "valid-authz-revoked",
        True,
        True,
        lambda ca, o, d: _set(
            ca, "authorizations", "stored_status = ? WHERE id = ?", ("revoked", _authz_id(d))
        ),
        "valid",
        False,
    ),
    (
        "valid-with-error",
        True,
        True,
        lambda ca, o, d: _set(ca, "orders", "error = ? WHERE id = ?", (json.dumps(ERROR), o)),
        "valid",
        True,
    ),
]


@pytest.mark.parametrize(
    ("issued", "solved", "change", "status", "error"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
async def test_a_poll_answers_the_full_reads_order(
    ca: Assembly,
    flow: Flow,
    issued: bool,
    solved: bool,
    change: Change,
    status: str,
    error: bool,
) -> None:
    name = "states.example.test"
    if issued:
        order_url, _ = await _issued(flow, name)
        await ca.app.authority.drain()
        order = (await flow.get(order_url)).json()
    else:
        order_url, order = await _ordered(flow, name, solved)
    change(ca, _order_id(order_url), order)
    for _ in range(2):  # the second read through what the first one decoded
        doc = await _poll_matches_full_read(ca, flow, order_url)
        assert doc["status"] == status
        assert ("error" in doc) == error

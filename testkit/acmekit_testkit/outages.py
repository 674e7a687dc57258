"""Clients for outage drills: every answer the CA gives is kept for the test to judge, and
the ordinary ACME flow is driven as a patient client does, waiting out a 503 for as long
as its Retry-After says (RFC 8555 §6.6) and carrying on where it was."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from acmekit.protocol import jose
from acmekit.protocol.challenges import key_authorization
from acmekit_testkit.acme_raw import Flow, HttpRawAcme, Resp
from acmekit_testkit.csr import make_csr

PATIENCE = 90.0  # seconds one step may keep meeting an outage before the drill fails


class RecordingAcme(HttpRawAcme):
    """HttpRawAcme that keeps every response, in order."""

    def __init__(self, base: str, root_pem: str) -> None:
        super().__init__(base, root_pem)
        self.responses: list[tuple[str, str, Resp]] = []

    async def request(
        self, method: str, url: str, body: bytes = b"", content_type: str | None = None
    ) -> Resp:
        resp = await super().request(method, url, body, content_type)
        self.responses.append((method, url, resp))
        return resp

    def server_errors(self) -> list[tuple[str, str, Resp]]:
        return [r for r in self.responses if r[2].status >= 500]


def is_try_again(resp: Resp) -> bool:
    """A 503 problem document with a Retry-After: the CA asks the client to come back."""
    return (
        resp.status == 503
        and resp.header("content-type") == "application/problem+json"
        and resp.header("retry-after") is not None
    )


@dataclass
class PatientFlow:
    """One account issuing certificates through outages; the orders it saw, by URL, with
    the certificate it downloaded for each (None while it had none)."""

    flow: Flow
    seen: dict[str, str | None] = field(default_factory=dict)
    finalizing: asyncio.Event | None = None  # set as each finalize is sent (to time a fault)

    async def _until_answered(self, send: Any) -> Resp:
        deadline = time.monotonic() + PATIENCE
        while True:
            resp: Resp = await send()
            if not is_try_again(resp) or time.monotonic() > deadline:
                return resp
            await asyncio.sleep(float(resp.header("retry-after") or 1))

    async def _get(self, url: str) -> Resp:
        return await self._until_answered(lambda: self.flow.get(url))

    async def _post(self, url: str, payload: Any) -> Resp:
        f = self.flow
        return await self._until_answered(lambda: f.acme.post(url, payload, f.key, f.kid))

    async def _poll(self, url: str, waiting: tuple[str, ...]) -> dict[str, Any]:
        deadline = time.monotonic() + PATIENCE
        while True:
            doc: dict[str, Any] = (await self._get(url)).json()
            if doc["status"] not in waiting or time.monotonic() > deadline:
                return doc
            await asyncio.sleep(0.1)

    async def issue(self, name: str) -> dict[str, Any]:
        """Account (once), order, http-01, finalize, download; the final order."""
        if not self.flow.kid:
            resp = await self._until_answered(self.flow.account)
            assert resp.status in (200, 201), resp.body
        created = await self._until_answered(lambda: self.flow.order(name))
        assert created.status == 201, created.body
        url = created.header("location") or ""
        self.seen[url] = None
        for authz_url in created.json()["authorizations"]:
            await self._solve(authz_url)
        order = await self._poll(url, ("pending",))
        assert order["status"] == "ready", order
        _, csr = make_csr(name)
        if self.finalizing is not None:
            self.finalizing.set()
        finalized = await self._post(order["finalize"], {"csr": jose.b64e(csr)})
        # orderNotReady: an earlier finalize was claimed before the outage cut its answer.
        assert finalized.status == 200 or finalized.problem_type == "orderNotReady", finalized.body
        order = await self._poll(url, ("ready", "processing"))
        if order["status"] == "valid":
            self.seen[url] = (await self._get(order["certificate"])).body.decode()
        return order

    async def _solve(self, authz_url: str) -> None:
        authz = (await self._get(authz_url)).json()
        if authz["status"] != "pending":
            return
        ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
        self.flow.responder.tokens[ch["token"]] = key_authorization(ch["token"], self.flow.key)
        resp = await self._post(ch["url"], {})
        assert resp.status == 200, resp.body
        await self._poll(authz_url, ("pending",))

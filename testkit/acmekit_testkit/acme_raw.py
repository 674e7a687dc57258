"""A raw ACME driver for the CA's tests: signs exactly what a test asks and calls the ASGI
app in-process, so a test can send well-formed requests and every kind of bad one.

It is deliberately not the project's client: the bad-input tables need to forge headers,
reuse nonces and break signatures, which a real client must never do.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol import jose
from acmekit.protocol.challenges import key_authorization
from acmekit.server.app import AcmeApp
from acmekit_testkit.csr import make_csr
from acmekit_testkit.ports import free_port

BASE = "https://ca.test"
AUTHZ_WAIT = 10.0  # seconds a CA over HTTP may take to validate an order's authorizations


@dataclass(frozen=True)
class Resp:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem_type(self) -> str:
        doc = self.json()
        assert self.header("content-type") == "application/problem+json", doc
        return str(doc["type"]).removeprefix("urn:ietf:params:acme:error:")


class RawAcme:
    def __init__(self, app: AcmeApp, base: str = BASE) -> None:
        self.app = app
        self.base = base

    async def request(
        self, method: str, url: str, body: bytes = b"", content_type: str | None = None
    ) -> Resp:
        path = url.removeprefix(self.base)
        headers = [(b"host", self.base.removeprefix("https://").encode())]
        if content_type:
            headers.append((b"content-type", content_type.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        scope = {"type": "http", "method": method, "path": path, "headers": headers,
                 "query_string": b"", "scheme": "https"}  # fmt: skip
        sent = False
        out: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                hdrs: dict[str, list[str]] = {}
                for k, v in message["headers"]:
                    hdrs.setdefault(k.decode().lower(), []).append(v.decode())
                out["headers"] = hdrs
            else:
                out["body"] += message.get("body", b"")

        await self.app(scope, receive, send)
        return Resp(out["status"], out["headers"], out["body"])

    async def directory(self) -> dict[str, Any]:
        doc: dict[str, Any] = (await self.request("GET", f"{self.base}/directory")).json()
        return doc

    async def nonce(self) -> str:
        resp = await self.request("HEAD", f"{self.base}/acme/new-nonce")
        nonce = resp.header("replay-nonce")
        assert nonce
        return nonce

    async def post(
        self,
        url: str,
        payload: Any,
        key: jose.PrivateKey,
        kid: str | None = None,
        *,
        nonce: str | None = None,
        tamper: Callable[[dict[str, str]], dict[str, str]] | None = None,
        content_type: str = "application/jose+json",
    ) -> Resp:
        signed = jose.sign(key, payload, url=url, nonce=nonce or await self.nonce(), kid=kid)
        if tamper is not None:
            signed = tamper(signed)
        return await self.request("POST", url, json.dumps(signed).encode(), content_type)


class HttpRawAcme(RawAcme):
    """The same driver over real HTTPS to a CA running as its own process."""

    def __init__(self, base: str, root_pem: str) -> None:
        super().__init__(app=None, base=base)  # type: ignore[arg-type]
        self._ssl = ssl.create_default_context(cafile=root_pem)
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self, method: str, url: str, body: bytes = b"", content_type: str | None = None
    ) -> Resp:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": content_type} if content_type else {}
        async with self._session.request(
            method, url, data=body or None, headers=headers, ssl=self._ssl
        ) as resp:
            hdrs: dict[str, list[str]] = {}
            for k, v in resp.headers.items():
                hdrs.setdefault(k.lower(), []).append(v)
            return Resp(resp.status, hdrs, await resp.read())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Http01Responder:
    """A real http-01 responder on 127.0.0.1 for the CA's validator to fetch from."""

    port: int = 0
    tokens: dict[str, str] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def serve(request: web.Request) -> web.Response:
            token = request.match_info["token"]
            if token not in self.tokens:
                return web.Response(status=404)
            return web.Response(text=self.tokens[token])

        app = web.Application()
        app.router.add_get("/.well-known/acme-challenge/{token}", serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = self.port or free_port()  # a preset port: where validators look
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Flow:
    """Drives the ordinary path for tests: account, order, http-01, finalize, download."""

    acme: RawAcme
    responder: Http01Responder
    key: jose.PrivateKey = field(default_factory=new_key)
    kid: str = ""

    async def account(self, **payload: Any) -> Resp:
        body = {"termsOfServiceAgreed": True, **payload}
        resp = await self.acme.post(f"{self.acme.base}/acme/new-account", body, self.key)
        if resp.status in (200, 201):
            self.kid = resp.header("location") or ""
        return resp

    async def order(self, *names: str, profile: str | None = None) -> Resp:
        idents = [{"type": "ip" if _is_ip(n) else "dns", "value": n} for n in names]
        payload: dict[str, Any] = {"identifiers": idents}
        if profile is not None:
            payload["profile"] = profile
        url = f"{self.acme.base}/acme/new-order"
        return await self.acme.post(url, payload, self.key, self.kid)

    async def get(self, url: str) -> Resp:
        return await self.acme.post(url, None, self.key, self.kid)

    async def solve(self, order: dict[str, Any]) -> None:
        """Answer http-01 for every pending authorization and wait for the CA."""
        for authz_url in order["authorizations"]:
            authz = (await self.get(authz_url)).json()
            if authz["status"] == "valid":
                continue
            ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
            self.responder.tokens[ch["token"]] = key_authorization(ch["token"], self.key)
            resp = await self.acme.post(ch["url"], {}, self.key, self.kid)
            assert resp.status == 200, resp.body
        await self.wait_for_authorizations(order)

    async def wait_for_authorizations(self, order: dict[str, Any]) -> None:
        """Until no authorization of `order` is pending; AssertionError after
        AUTHZ_WAIT seconds."""
        if self.acme.app is not None:
            await self.acme.app.authority.drain()
            return
        deadline = time.monotonic() + AUTHZ_WAIT
        for url in order["authorizations"]:
            while (status := (await self.get(url)).json()["status"]) == "pending":
                if time.monotonic() > deadline:
                    raise AssertionError(f"authorization {url} still {status} after {AUTHZ_WAIT} s")
                await asyncio.sleep(0.05)

    async def finalize(self, order_url: str, names: tuple[str, ...]) -> Resp:
        order = (await self.get(order_url)).json()
        _, csr = make_csr(*names)
        return await self.acme.post(order["finalize"], {"csr": jose.b64e(csr)}, self.key, self.kid)

    async def one_certificate(self, name: str, read_challenge: bool = False) -> None:
        """In process, one certificate for `name` by the same requests every time (the
        store's counts per certificate are pinned on them): newOrder, the authorization,
        the http-01 answer, finalize, the order's poll, the download. `read_challenge`:
        the challenge read (POST-as-GET) before it is answered."""
        resp = await self.order(name)
        assert resp.status == 201, resp.body
        order_url = resp.header("location") or ""
        authz_url = resp.json()["authorizations"][0]
        authz = (await self.get(authz_url)).json()
        ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
        if read_challenge:
            assert (await self.get(ch["url"])).json()["status"] == "pending"
        self.responder.tokens[ch["token"]] = key_authorization(ch["token"], self.key)
        assert (await self.acme.post(ch["url"], {}, self.key, self.kid)).status == 200
        await self._drain()
        assert (await self.get(authz_url)).json()["status"] == "valid"
        await self._finalize_and_download(order_url, name)

    async def one_renewal(self, name: str, replaces: str | None = None) -> None:
        """In process, a second order for `name`, its authorization valid and reused (ready
        at once): the authorization read, finalize, the order's poll, the download.
        `replaces`: the ARI certID it replaces (RFC 9773 §5)."""
        body: dict[str, Any] = {"identifiers": [{"type": "dns", "value": name}]}
        if replaces is not None:
            body["replaces"] = replaces
        resp = await self.acme.post(f"{self.acme.base}/acme/new-order", body, self.key, self.kid)
        assert resp.status == 201 and resp.json()["status"] == "ready", resp.body
        order_url = resp.header("location") or ""
        assert (await self.get(resp.json()["authorizations"][0])).json()["status"] == "valid"
        await self._finalize_and_download(order_url, name)

    async def _finalize_and_download(self, order_url: str, name: str) -> None:
        done = await self.finalize(order_url, (name,))
        assert done.status == 200, done.body
        await self._drain()
        final = (await self.get(order_url)).json()
        assert final["status"] == "valid", final
        cert = await self.get(final["certificate"])
        assert cert.status == 200 and b"BEGIN CERTIFICATE" in cert.body, cert.body

    async def _drain(self) -> None:
        assert self.acme.app is not None, "in process only"
        await self.acme.app.authority.drain()

    async def issue(self, *names: str, profile: str | None = None) -> tuple[str, dict[str, Any]]:
        """The whole flow; returns (order URL, final order document)."""
        if not self.kid:
            await self.account()
        resp = await self.order(*names, profile=profile)
        assert resp.status == 201, resp.body
        order_url = resp.header("location") or ""
        await self.solve(resp.json())
        done = await self.finalize(order_url, names)
        assert done.status == 200, done.body
        return order_url, done.json()

"""The CA's HTTP face: a bare ASGI 3 application (no framework; see docs/decisions.md).

Every request goes through `handle`: route, authenticate (POST), call the authority,
render. Any AcmeError from any depth becomes one problem document here (§6.7), with a
fresh Replay-Nonce and Link rel="index"; a database outage becomes serverInternal with
503 and Retry-After; anything else becomes serverInternal, never a traceback.

§6.3: every resource is read with POST-as-GET; the directory and newNonce, and the
certificate downloads, also answer a plain GET; renewalInfo is GET only (RFC 9773 §4.2).
Wherever GET is served, so is HEAD (RFC 9110 §9.1).
The routes are the paths of acmekit.server.paths, the same that render.Urls builds on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from acmekit.database import UNAVAILABLE
from acmekit.protocol import jsontext, payloads
from acmekit.protocol.frozen import frozen_for_mypy
from acmekit.protocol.problems import AcmeError, Problem, ProblemType, malformed, problem
from acmekit.server import paths, render
from acmekit.server.auth import (
    AheadOf,
    Authenticated,
    Authenticator,
    Signer,
    external_account_binding,
    key_change,
)
from acmekit.server.authority import Authority, ChallengeReads, OrderView, signer_unavailable
from acmekit.server.crl import CrlRebuilder, record_shards
from acmekit.server.lint import Linter
from acmekit.server.nonces import NonceService
from acmekit.server.purge import Purger, record_settings
from acmekit.server.render import Urls
from acmekit.server.repos.base import Ahead
from acmekit.server.repos.purge import Due
from acmekit.server.signing import SignerUnavailable

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JOSE = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"
# Where the latest validation was started, as acmekit before schema 0003 recorded it (no
# longer written: a challenge keeps its own account URL).
LEGACY_BASE_URL_SETTING = "base_url"

DATABASE_UNAVAILABLE = Problem(
    str(ProblemType.SERVER_INTERNAL), "the database is unavailable; try again", 503, retry_after=2
)

NO_STORE = (b"cache-control", b"no-store")
INDEX_LINKS_KEPT = 16  # Link headers kept, one per base URL
MAX_BIGINT = 2**63 - 1  # the largest value of the database's BIGINT (orders.created)

POST = frozenset({"POST"})
# RFC 9110 §9.1: HEAD wherever GET is served; §9.3.2: answered as GET is, the same status
# and headers (Content-Length too), without the content (`_send`).
GET = frozenset({"GET", "HEAD"})
READ = GET | {"POST"}  # a plain GET, or POST-as-GET


@frozen_for_mypy  # built every request: docs/decisions.md
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    urls: Urls
    client: str | None = None  # the peer's IP address, when the server knows it
    query: str = ""  # the request target's query, without its "?"

    @property
    def url(self) -> str:
        """The URL the request was sent to, query included: a JWS's `url` must be this
        exact URL (RFC 8555 §6.4), so one signed for a resource is not good at another
        spelling of it."""
        url = self.urls.base + self.path
        return f"{url}?{self.query}" if self.query else url


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def link(self, url: str, rel: str) -> Response:
        self.headers.append(("Link", f'<{url}>;rel="{rel}"'))
        return self


def json_response(doc: Any, status: int = 200, location: str | None = None) -> Response:
    return json_text_response(jsontext.dumps(doc), status, location)


def json_text_response(body: bytes, status: int = 200, location: str | None = None) -> Response:
    """A JSON document already written (render's `*_json`)."""
    resp = Response(status, body, "application/json")
    if location:
        resp.headers.append(("Location", location))
    return resp


Handler = Callable[[Request, "re.Match[str]"], Awaitable[Response]]
Route = tuple[frozenset[str], re.Pattern[str], Handler]


def _route_key(path: str) -> str:
    """A path's first two segments: "/acme/order" of "/acme/order/ID/finalize"."""
    return "/".join(path.split("/", 3)[:3])


class AcmeApp:
    def __init__(self, authority: Authority, nonces: NonceService) -> None:
        self.authority = authority
        # Only PostgreSQL sends a handler's first reads with the account's (`Ahead`): on
        # SQLite nothing would be sent, so nothing is made (no `Ahead`, no CSR or names
        # taken from the payload early) and each read is made where the handler reads.
        self._ahead = authority.store.remote
        self.nonces = nonces
        self.purger = Purger(
            authority.store,
            authority.config.purge_settings(),
            authority.now,
            database_clock=authority.limits.database_clock,
        )
        self.auth = Authenticator(authority.store, nonces, authority.policy.check_signing_key)
        self.config = authority.config
        # dns-persist-01's issuer names, derived from the (frozen) configuration once:
        # the property makes them again on every call (an authorization's and a
        # challenge's answer, each request).
        self._persist_issuers = self.config.persist_issuers
        self._background: list[asyncio.Task[None]] = []
        self._crl_rebuilder: CrlRebuilder | None = None
        self._settings_recorded = False  # `_record_settings` done, else housekeeping's
        # Host headers this listener answers to, and the base URL for the answer to one
        # it does not (None: any Host, as in-process tests and a set base_url need).
        self._authorities: frozenset[str] | None = None
        self._misdirected_base = ""
        self._index_links: dict[str, tuple[bytes, bytes]] = {}
        table: list[tuple[frozenset[str], paths.Endpoint, Handler]] = [
            (READ, paths.DIRECTORY, self.directory),
            (READ, paths.NEW_NONCE, self.new_nonce),
            (POST, paths.NEW_ACCOUNT, self.new_account),
            (POST, paths.NEW_ORDER, self.new_order),
            (POST, paths.REVOKE_CERT, self.revoke),
            (POST, paths.KEY_CHANGE, self.key_change),
            (POST, paths.ACCOUNT, self.account),
            (POST, paths.ACCOUNT_ORDERS, self.orders),
            (POST, paths.ACCOUNT_ORDERS_PAGE, self.orders),
            (POST, paths.ORDER, self.order),
            (POST, paths.FINALIZE, self.finalize),
            (POST, paths.AUTHZ, self.authz),
            (POST, paths.CHALLENGE, self.challenge),
            (READ, paths.CERTIFICATE, self.certificate),
            (READ, paths.ISSUER_CERT, self.issuer_cert),
            (GET, paths.RENEWAL_INFO_CERT, self.renewal_info),
        ]
        # The routes by their path's first two segments, which every path of ours spells
        # out: a request tries the one or two routes under its own, not all sixteen.
        self._routes_by_key: dict[str, list[Route]] = {}
        for methods, endpoint, handler in table:
            key = _route_key(endpoint.template)
            assert "{}" not in key, f"a route's first two segments are fixed: {key}"
            self._routes_by_key.setdefault(key, []).append((methods, endpoint.pattern, handler))

    def answer_only(self, authorities: Iterable[str], own_base: str) -> None:
        """Serve only requests whose Host is one of `authorities` ("name:port", or a bare
        name for port 443); others get 421 (RFC 9110 §15.5.20), their problem linking
        to `own_base`. Without this, resource URLs would follow any Host a client sent."""
        self._authorities = frozenset(a.lower() for a in authorities)
        self._misdirected_base = own_base

    # ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._record_settings()
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start(self) -> None:
        """The background tasks (at the ASGI lifespan's startup): housekeeping, and the
        CRL rebuilder that revocations wake (crl.py), so no CRL is made on the loop."""
        crl = self.authority.crl
        if crl is not None:
            self._crl_rebuilder = CrlRebuilder(crl)
            self._background.append(self._crl_rebuilder.start())
        self._background.append(asyncio.create_task(self._housekeeping()))

    def _record_settings(self) -> None:
        """For `acmekit server db purge` run without this process's TOML file, and for
        `acmekit server certs revoke`, which remakes the shard this CA serves (crl.py,
        `record_shards`); a database down at this moment delays nothing: housekeeping
        records them once it is back (`_record_settings_late`). Until then a command
        would take an older record, whose shard count may not be this CA's."""
        try:
            self._write_settings()
        except UNAVAILABLE as exc:
            log.warning("settings not recorded yet, the database is unavailable: %s", exc)

    def _write_settings(self) -> None:
        record_settings(self.authority.store, self.purger.settings)
        if self.authority.crl is not None:
            record_shards(self.authority.store, self.authority.crl.settings.shards)
        self._settings_recorded = True

    async def _record_settings_late(self) -> None:
        if not self._settings_recorded:
            await asyncio.to_thread(self._write_settings)
            log.info("settings recorded, the database is back")

    async def close(self) -> None:
        crl = self.authority.crl
        linter = crl.linter if crl is not None else None
        linting = linter.crl_process if isinstance(linter, Linter) else None
        if linting is not None:
            # The CRL rebuilder's remaking is waited for below: without its lints (in
            # their own process, which can be ended) it is a few signatures.
            linting.abort()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        if linting is not None:
            linting.resume()  # the process's one CRL linter, for whatever runs next
        if self._crl_rebuilder is not None:
            self._crl_rebuilder.stop()  # a later revocation remakes its CRL itself
            self._crl_rebuilder = None
        await self.authority.close()

    async def _housekeeping(self) -> None:
        """Recover stale work now and then; prune used nonces; purge a few batches of
        what has expired (server/purge.py) every `[purge] every`; refresh the CRLs.
        Each task is tried on its own: one that fails (a purge refused by the database)
        does not hold back the others."""
        period = max(0.5, min(10.0, self.authority.stale_after.total_seconds() / 2))
        purge = self.config.purge
        purge_at = time.monotonic()
        while True:
            await self._housekeeping_task("settings record", self._record_settings_late)
            await self._housekeeping_task("recovery", self.recover)
            await self._housekeeping_task("nonce pruning", self._prune_nonces)
            if purge.enabled and time.monotonic() >= purge_at:
                purge_at = time.monotonic() + purge.every.total_seconds()
                await self._housekeeping_task("purge", self.purge_batches)
            if self.authority.crl is not None:
                await self._housekeeping_task("CRL refresh", self._refresh_crl)
            await asyncio.sleep(period)

    async def _housekeeping_task(self, what: str, task: Callable[[], Awaitable[None]]) -> None:
        try:
            await task()
        except UNAVAILABLE as exc:  # an outage: the next round tries again
            log.warning("housekeeping (%s) waits for the database: %s", what, exc)
        except SignerUnavailable as exc:
            log.warning("housekeeping (%s) waits for the signing key: %s", what, exc)
        except Exception:
            log.exception("housekeeping (%s) failed", what)

    async def _prune_nonces(self) -> None:
        self.nonces.prune()

    async def _refresh_crl(self) -> None:
        """By the CRL rebuilder, off the loop (crl.py); it logs its own failures."""
        if self._crl_rebuilder is not None:
            self._crl_rebuilder.refresh_soon()

    async def purge_batches(self) -> None:
        """`[purge] batches` batches of each kind, off the event loop: each is a short
        transaction of its own, so requests go on between them."""
        done = await asyncio.to_thread(self.purger.batches, self.config.purge.batches)
        if done != Due():
            log.info("purged %s", done)

    async def recover(self) -> None:
        """The authority's recovery. A validation keeps the account URL its client used;
        one started before it did (schema 0003) is named under the configured base, or
        the base such versions recorded in the settings."""
        base = self.config.base_url or self.authority.store.accounts.stored_setting(
            LEGACY_BASE_URL_SETTING
        )
        await self.authority.recover(Urls(base or "https://localhost").account)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Loops, not comprehensions, here and in `_send`: a comprehension is a function
        # object made and called once a request (up to Python 3.11).
        headers = {}
        for name, value in scope["headers"]:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        early: AcmeError | None = None
        try:
            body = await self._read_body(headers, receive)
        except AcmeError as exc:
            body, early = b"", exc
        host = headers.get("host", "")
        if self._authorities is not None and host.lower() not in self._authorities:
            early = problem(
                ProblemType.MALFORMED, f"Host {host!r} is not a name of this server", status=421
            )
            host = self._misdirected_base.removeprefix("https://")
        urls = Urls(self.config.base_url or f"https://{host or 'localhost'}")
        client = scope.get("client")
        peer = str(client[0]) if client else None
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        req = Request(scope["method"], scope["path"], headers, body, urls, peer, query)
        resp = self._problem(early.problem) if early else await self.handle(req)
        await self._send(req, resp, send)

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        limit = self.config.max_body
        if int(headers.get("content-length") or 0) > limit:
            raise problem(ProblemType.MALFORMED, f"body larger than {limit} bytes", status=413)
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise problem(ProblemType.MALFORMED, f"body larger than {limit} bytes", status=413)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _index_link(self, urls: Urls) -> tuple[bytes, bytes]:
        """The Link rel="index" header of every response (§7.1), built once per base."""
        link = self._index_links.get(urls.base)
        if link is None:
            if len(self._index_links) >= INDEX_LINKS_KEPT:  # bases follow Host headers
                self._index_links.clear()
            link = (b"link", f'<{urls.directory}>;rel="index"'.encode())
            self._index_links[urls.base] = link
        return link

    async def _send(self, req: Request, resp: Response, send: Send) -> None:
        headers = []
        for name, value in resp.headers:
            headers.append((name.encode(), value.encode()))
        headers.append((b"replay-nonce", self.nonces.issue().encode()))
        headers.append(self._index_link(req.urls))
        headers.append(NO_STORE)
        if resp.content_type:
            headers.append((b"content-type", resp.content_type.encode()))
        headers.append((b"content-length", str(len(resp.body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        body = b"" if req.method == "HEAD" else resp.body
        await send({"type": "http.response.body", "body": body})

    # dispatch -----------------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        try:
            return await self._dispatch(req)
        except AcmeError as exc:
            return self._problem(exc.problem)
        except UNAVAILABLE as exc:
            # A database outage is not the client's fault and passes: 503 with Retry-After
            # (§6.6), one log line, no traceback. What was in flight is left to recovery.
            log.warning("database unavailable on %s %s: %s", req.method, req.path, exc)
            return self._problem(DATABASE_UNAVAILABLE)
        except SignerUnavailable as exc:  # the key's token is away: as an outage
            log.warning("signing key unavailable on %s %s: %s", req.method, req.path, exc)
            return self._problem(signer_unavailable(exc).problem)
        except Exception:
            log.exception("internal error on %s %s", req.method, req.path)
            return self._problem(Problem(str(ProblemType.SERVER_INTERNAL), "internal error", 500))

    async def _dispatch(self, req: Request) -> Response:
        for methods, pattern, handler in self._routes_by_key.get(_route_key(req.path), ()):
            match = pattern.fullmatch(req.path)
            if match is None:
                continue
            if req.method not in methods:
                resp = self._problem(Problem(str(ProblemType.MALFORMED), "method not allowed", 405))
                resp.headers.append(("Allow", ", ".join(sorted(methods))))
                return resp
            return await handler(req, match)
        raise problem(ProblemType.MALFORMED, f"no resource at {req.path}", status=404)

    @staticmethod
    def _problem(prob: Problem) -> Response:
        resp = Response(prob.status, jsontext.dumps(prob.to_json()), "application/problem+json")
        if prob.retry_after is not None:
            resp.headers.append(("Retry-After", str(prob.retry_after)))
        return resp

    def _authenticate(
        self,
        req: Request,
        signer: Signer = "kid",
        ahead: Sequence[Ahead[Any]] | AheadOf = (),
    ) -> Authenticated:
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != JOSE:
            raise problem(
                ProblemType.MALFORMED, f"Content-Type must be {JOSE}, not {ctype!r}", status=415
            )
        return self.auth.authenticate(
            req.body, req.url, req.urls.account_prefix, signer=signer, ahead=ahead
        )

    def _post_as_get(self, req: Request, ahead: Sequence[Ahead[Any]] = ()) -> Authenticated:
        auth = self._authenticate(req, ahead=ahead)
        if not auth.is_post_as_get:
            raise malformed("this resource is read with POST-as-GET (an empty payload)")
        return auth

    def _read(self, req: Request) -> None:
        """A resource that also answers a plain GET: a POST must be POST-as-GET."""
        if req.method == "POST":
            self._post_as_get(req)

    # handlers -----------------------------------------------------------------------

    async def directory(self, req: Request, _: re.Match[str]) -> Response:
        self._read(req)
        return json_response(render.directory(req.urls, self.config))

    async def new_nonce(self, req: Request, _: re.Match[str]) -> Response:
        """§7.2: 204 to GET, 200 to HEAD (and to POST-as-GET, §6.3)."""
        self._read(req)
        return Response(204 if req.method == "GET" else 200)

    async def new_account(self, req: Request, _: re.Match[str]) -> Response:
        auth = self._authenticate(req, "jwk")
        payloads.check(payloads.NEW_ACCOUNT, auth.payload, "newAccount payload")
        eab = external_account_binding(auth.payload, req.url)
        rec, created = self.authority.new_account(auth, eab, req.client)
        doc = render.account(req.urls, rec)
        return json_response(doc, 201 if created else 200, req.urls.account(rec.id))

    async def account(self, req: Request, m: re.Match[str]) -> Response:
        auth = self._authenticate(req)
        if not auth.is_post_as_get:
            payloads.check(payloads.ACCOUNT_UPDATE, auth.payload, "account update")
        rec = self.authority.update_account(auth, m[1])
        return json_response(render.account(req.urls, rec), location=req.urls.account(rec.id))

    async def key_change(self, req: Request, _: re.Match[str]) -> Response:
        auth = self._authenticate(req)
        payloads.check(payloads.KEY_CHANGE, auth.payload, "keyChange payload")
        change = key_change(auth, req.url, req.urls.account_prefix)
        rec = self.authority.key_change(auth.require_account(), change)
        return json_response(render.account(req.urls, rec), location=req.urls.account(rec.id))

    async def orders(self, req: Request, m: re.Match[str]) -> Response:
        """§7.1.2.1: one page of the account's orders, linking the next if there is one."""
        account = self._post_as_get(req).require_account()
        account_id, tilde, page = m[1].partition("~")
        if account.id != account_id:
            raise problem(ProblemType.UNAUTHORIZED, "these orders belong to another account")
        created, _, last = page.partition("-")
        # A page names its last order's creation time, a BIGINT column: a number past
        # int64 cannot be one, and the database driver would fail on it (a 500 instead
        # of the problem document RFC 8555 §6.7 asks for).
        if tilde and not (
            created.isascii()
            and created.isdigit()
            and len(created) <= 19
            and int(created) <= MAX_BIGINT
        ):
            raise malformed(f"no such page of orders: {m[1]}")
        after = (int(created), last) if tilde else None
        found, more = self.authority.account_orders(account, after)
        resp = json_response({"orders": [req.urls.order(order_id) for _, order_id in found]})
        if more:
            resp.link(req.urls.account_orders_page(account.id, found[-1]), "next")
        return resp

    async def new_order(self, req: Request, _: re.Match[str]) -> Response:
        reads = self.authority.new_order_reads() if self._ahead else None
        auth = self._authenticate(req, ahead=() if reads is None else reads)
        payloads.check(payloads.NEW_ORDER, auth.payload, "newOrder payload")
        account = auth.require_account()
        view = self.authority.new_order(account, auth.payload, reads)
        # draft-ietf-acme-dns-persist-02 §4.4: a standing record may validate at once.
        uri = req.urls.account(account.id)
        view = await self.authority.validate_standing(account, view, uri)
        return self._order(req, view, 201)

    # The handlers below send their first read with the request's account read: one
    # round trip for both on PostgreSQL (`Ahead`), its answer taken where they read.

    async def order(self, req: Request, m: re.Match[str]) -> Response:
        ahead = self.authority.store.orders.polled_order_ahead(m[1]) if self._ahead else None
        account = self._post_as_get(req, () if ahead is None else (ahead,)).require_account()
        return self._order(req, self.authority.polled_order_view(account, m[1], ahead))

    async def finalize(self, req: Request, m: re.Match[str]) -> Response:
        reads = self.authority.finalize_reads(m[1]) if self._ahead else None
        auth = self._authenticate(req, ahead=() if reads is None else reads)
        account = auth.require_account()
        payloads.check(payloads.FINALIZE, auth.payload, "finalize payload")
        uri = req.urls.account(account.id)
        view = await self.authority.finalize(auth, m[1], uri, reads)
        return self._order(req, view)

    def _order(self, req: Request, view: OrderView, status: int = 200) -> Response:
        body = render.order_json(req.urls, view)
        resp = json_text_response(body, status, req.urls.order(view.record.id))
        if view.status == "processing":
            resp.headers.append(("Retry-After", "1"))
        return resp

    async def authz(self, req: Request, m: re.Match[str]) -> Response:
        ahead = self.authority.store.orders.authorization_ahead(m[1]) if self._ahead else None
        auth = self._authenticate(req, ahead=() if ahead is None else (ahead,))
        if not auth.is_post_as_get:
            payloads.check(payloads.AUTHZ_UPDATE, auth.payload, "authorization update")
        view = self.authority.update_authz(auth, m[1], ahead)
        return json_text_response(
            render.authorization_json(req.urls, view, self._persist_issuers),
            location=req.urls.authz(m[1]),
        )

    async def challenge(self, req: Request, m: re.Match[str]) -> Response:
        # With the rate limits on, the failed-validations bucket's too, for a response
        # alone (`ChallengeReads`): a POST-as-GET never reads it.
        reads = ChallengeReads(self.authority, m[1]) if self._ahead else None
        auth = self._authenticate(req, ahead=() if reads is None else reads)
        if not auth.is_post_as_get:
            payloads.check(payloads.CHALLENGE_RESPONSE, auth.payload, "challenge response")
        uri = req.urls.account(auth.require_account().id)
        ahead = failures = None
        if reads is not None:
            ahead, failures = reads.challenge, reads.failures
        ch, authz = await self.authority.start_challenge(auth, m[1], uri, ahead, failures)
        # Most validations end before the answer (challenge_wait); no Retry-After on one
        # still processing: a client's own short-then-growing polling serves it better
        # than a fixed second.
        resp = json_text_response(render.challenge_json(req.urls, ch, self._persist_issuers))
        return resp.link(req.urls.authz(authz.id), "up")

    async def certificate(self, req: Request, m: re.Match[str]) -> Response:
        self._read(req)
        pem = self.authority.certificate_pem(m[1])
        resp = Response(200, pem.encode(), PEM_CHAIN)
        return resp.link(req.urls.resource(paths.ISSUER_CERT), "up")

    async def issuer_cert(self, req: Request, _: re.Match[str]) -> Response:
        """The target of a certificate's Link rel="up" (§7.4.2): the intermediate."""
        self._read(req)
        return Response(200, self.authority.issuer.chain_pem(), PEM_CHAIN)

    async def revoke(self, req: Request, _: re.Match[str]) -> Response:
        auth = self._authenticate(req, "either")
        payloads.check(payloads.REVOKE_CERT, auth.payload, "revokeCert payload")
        self.authority.revoke(auth, auth.payload)
        return Response(200)

    async def renewal_info(self, req: Request, m: re.Match[str]) -> Response:
        """RFC 9773 §4.2: unauthenticated GET; Retry-After says when to ask again."""
        window = self.authority.renewal_info(m[1])
        resp = json_response(render.renewal_info(window))
        resp.headers.append(("Retry-After", str(int(self.config.ari.retry_after.total_seconds()))))
        return resp

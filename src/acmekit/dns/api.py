"""The DNS server's HTTP API (aiohttp.web): challtestsrv's calls and acme-dns's two.
Every endpoint, body and answer is in docs/dns.md (a test keeps the two in step).

Pebble's challtestsrv management calls, JSON POSTs answered 200 with an empty body:
`/set-txt {"host","value"}` (adds a value; several may coexist), `/clear-txt {"host"}`,
`/add-a` and `/add-aaaa {"host","addresses"}`, `/clear-a`, `/clear-aaaa`,
`/add-caa {"host","policies":[{"tag","value"}]}`, `/clear-caa`,
`/set-cname {"host","target"}`, `/clear-cname`, `/set-default-ipv4 {"ip"}` and
`/set-default-ipv6 {"ip"}` (an empty ip clears the default).

acme-dns's delegation calls: `POST /register` answers 201 with username, password,
fulldomain and subdomain; `POST /update` with headers X-Api-User and X-Api-Key and body
`{"subdomain","txt"}` publishes a TXT at that registration's fulldomain (the two most
recent values are kept) and answers `{"txt": value}`; acme-dns's error bodies
(`{"error": "forbidden"}` with 401, `malformed_json_payload` and `bad_txt` with 400).

With an API token every call but `/update` and `/health` needs `Authorization: Bearer
TOKEN` (`/update` has its per-registration credentials). The command line insists on a
token when the API listens on anything but loopback. Without a token, the API answers
only a Host that is an IP address or `localhost` and refuses changes asked from another
origin, so that a web page in the host's browser cannot publish records
(acmekit.webguard). Errors in a request are problem documents (RFC 8555 §6.7 shape,
`application/problem+json`).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import dns.name
import dns.rdata
import dns.rdatatype
from aiohttp import web

from acmekit.dns.notify import Notifier
from acmekit.dns.registry import KEEP_TXT, Registry
from acmekit.dns.store import RecordStore, RecordType, caa_rdata, make_rdata, parse_name
from acmekit.protocol import jsontext
from acmekit.protocol.problems import AcmeError, malformed, unauthorized
from acmekit.webguard import browser_guard

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ACME_TXT = re.compile(r"[A-Za-z0-9_-]{43}")  # fullmatch: `$` also matches before a "\n"
STORE_KEY = web.AppKey("store", RecordStore)
REGISTRY_KEY = web.AppKey("registry", Registry)
NOTIFIER_KEY = web.AppKey("notifier", Notifier)
OPEN_PATHS = frozenset({"/update", "/health"})


async def _json(request: web.Request) -> dict[str, Any]:
    doc = jsontext.loads(await request.read())
    if not isinstance(doc, dict):
        raise malformed("request body is not a JSON object")
    return doc


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise malformed(f"field {key!r} must be a string")
    return value


def _host(request: web.Request, doc: dict[str, Any]) -> dns.name.Name:
    """The record owner named by `host`, if it lies inside the zones served."""
    return _store(request).served(parse_name(_str(doc, "host")))


def _problem_response(error: AcmeError) -> web.Response:
    body = json.dumps(error.problem.to_json())
    return web.Response(
        status=error.problem.status, text=body, content_type="application/problem+json"
    )


def _token_middleware(token: str | None) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if token is not None and request.path not in OPEN_PATHS:
                given = request.headers.get("Authorization", "").removeprefix("Bearer ")
                if not hmac.compare_digest(given.encode(), token.encode()):
                    raise unauthorized("missing or wrong API token")
            return await handler(request)
        except AcmeError as exc:
            return _problem_response(exc)

    return middleware


def _store(request: web.Request) -> RecordStore:
    return request.app[STORE_KEY]


def _adder(rtype: RecordType, field: str) -> Handler:
    async def add(request: web.Request) -> web.Response:
        doc = await _json(request)
        name = _host(request, doc)
        values = doc.get(field)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise malformed(f"field {field!r} must be a list of strings")
        rdatas = [make_rdata(rtype, v) for v in values]
        _add_all(_store(request), name, rdatas)
        return web.Response()

    return add


def _clearer(rtype: RecordType) -> Handler:
    async def clear(request: web.Request) -> web.Response:
        doc = await _json(request)
        _store(request).clear(_host(request, doc), rtype.rdtype)
        return web.Response()

    return clear


async def set_txt(request: web.Request) -> web.Response:
    doc = await _json(request)
    name, rdata = _host(request, doc), make_rdata(RecordType.TXT, _str(doc, "value"))
    _store(request).add(name, rdata)
    log.info("TXT published at %s", name)
    return web.Response()


async def set_cname(request: web.Request) -> web.Response:
    doc = await _json(request)
    name = _host(request, doc)
    _store(request).add(name, make_rdata(RecordType.CNAME, _str(doc, "target")))
    return web.Response()


async def add_caa(request: web.Request) -> web.Response:
    doc = await _json(request)
    name, policies = _host(request, doc), doc.get("policies")
    if not isinstance(policies, list) or not all(isinstance(p, dict) for p in policies):
        raise malformed("field 'policies' must be a list of {tag, value} objects")
    rdatas = [caa_rdata(_str(p, "tag"), _str(p, "value")) for p in policies]
    _add_all(_store(request), name, rdatas)
    return web.Response()


def _add_all(store: RecordStore, name: dns.name.Name, rdatas: list[dns.rdata.Rdata]) -> None:
    """Add records of one type; none when together they would not fit at the name."""
    if rdatas:
        existing = store.rdatas(name, rdatas[0].rdtype)
        new = [rd for rd in rdatas if rd not in existing]
        store.check_room(name, rdatas[0].rdtype, [*existing, *new])
    for rdata in rdatas:
        store.add(name, rdata)


def _default_setter(version: int) -> Handler:
    async def set_default(request: web.Request) -> web.Response:
        doc = await _json(request)
        _store(request).set_default(version, _str(doc, "ip") or None)
        return web.Response()

    return set_default


async def register(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    password = secrets.token_urlsafe(30)
    reg = registry.register(
        str(uuid.uuid4()), password, str(uuid.uuid4()), salt=secrets.token_hex(8)
    )
    log.info("registered subdomain %s", reg.subdomain)
    body = {
        "username": reg.username,
        "password": password,
        "fulldomain": reg.fulldomain,
        "subdomain": reg.subdomain,
        "allowfrom": [],
    }
    return web.json_response(body, status=201)


def _acme_dns_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


async def update(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    user = request.headers.get("X-Api-User", "")
    reg = registry.authenticate(user, request.headers.get("X-Api-Key", ""))
    if reg is None:
        return _acme_dns_error(401, "forbidden")
    try:
        doc = jsontext.loads(await request.read())
    except AcmeError:
        return _acme_dns_error(400, "malformed_json_payload")
    if not isinstance(doc, dict) or doc.get("subdomain") != reg.subdomain:
        return _acme_dns_error(401, "forbidden")
    txt = doc.get("txt")
    if not isinstance(txt, str) or not _ACME_TXT.fullmatch(txt):
        return _acme_dns_error(400, "bad_txt")
    name = parse_name(reg.fulldomain)
    _store(request).add(name, make_rdata(RecordType.TXT, txt))
    _store(request).keep_latest(name, dns.rdatatype.TXT, KEEP_TXT)
    log.info("acme-dns update for subdomain %s", reg.subdomain)
    return web.json_response({"txt": txt})


async def health(request: web.Request) -> web.Response:
    return web.Response()


async def secondaries(request: web.Request) -> web.Response:
    notifier = request.app.get(NOTIFIER_KEY)
    found = [] if notifier is None else await notifier.status()
    return web.json_response({"serial": _store(request).serial, "secondaries": found})


def make_api(
    store: RecordStore,
    registry: Registry,
    *,
    token: str | None = None,
    notifier: Notifier | None = None,
) -> web.Application:
    """The aiohttp application serving `store` and `registry` (and the state of
    `notifier`'s secondaries)."""
    # Without a token the API is on loopback (DnsService): kept from the host's browser.
    guard = browser_guard(check_host=token is None, exempt=OPEN_PATHS.__contains__)
    app = web.Application(middlewares=[guard, _token_middleware(token)], client_max_size=64 * 1024)
    app[STORE_KEY] = store
    app[REGISTRY_KEY] = registry
    if notifier is not None:
        app[NOTIFIER_KEY] = notifier
    routes: dict[str, Handler] = {
        "/set-txt": set_txt,
        "/clear-txt": _clearer(RecordType.TXT),
        "/add-a": _adder(RecordType.A, "addresses"),
        "/clear-a": _clearer(RecordType.A),
        "/add-aaaa": _adder(RecordType.AAAA, "addresses"),
        "/clear-aaaa": _clearer(RecordType.AAAA),
        "/add-caa": add_caa,
        "/clear-caa": _clearer(RecordType.CAA),
        "/set-cname": set_cname,
        "/clear-cname": _clearer(RecordType.CNAME),
        "/set-default-ipv4": _default_setter(4),
        "/set-default-ipv6": _default_setter(6),
        "/register": register,
        "/update": update,
    }
    app.router.add_routes([web.post(path, handler) for path, handler in routes.items()])
    app.router.add_get("/health", health)
    app.router.add_get("/secondaries", secondaries)
    return app

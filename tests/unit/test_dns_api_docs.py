"""docs/dns.md documents the DNS server's HTTP API: every route the API serves has its
section there, and every section names a route that exists, so the two cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import dns.name

from acmekit.dns.api import make_api
from acmekit.dns.registry import Registry
from acmekit.dns.store import RecordStore

DOC = Path(__file__).parents[2] / "docs" / "dns.md"


def _served_routes() -> set[str]:
    app = make_api(RecordStore([]), Registry(dns.name.from_text("acme-dns.test")))
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD":  # aiohttp's automatic companion of every GET
            routes.add(f"{route.method} {path}")
    return routes


def _documented_routes() -> set[str]:
    return set(re.findall(r"^### `([A-Z]+ /\S*)`$", DOC.read_text(), flags=re.MULTILINE))


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    served = _served_routes()
    assert "POST /set-txt" in served and "GET /health" in served
    assert served - _documented_routes() == set(), "routes missing from docs/dns.md"
    assert _documented_routes() - served == set(), "docs/dns.md names routes not served"

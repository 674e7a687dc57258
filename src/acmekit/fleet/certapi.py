"""Certificates for edges that ask at handshake time (Caddy's `get_certificate http`).

    GET /certificate?server_name=NAME[&token=T]

answers 200 with the site's certificate chain (leaf first) and then its private key,
PEM, concatenated, for a name a site has (a wildcard site's certificate for a name one
label under it); 204 for a name the fleet does not manage (the edge declines, and the
handshake fails or gets the edge's fallback). Caddy sends the client's server name as
`server_name` (and more parameters, ignored here) on every handshake that is not a
resumed session, and keeps nothing: a renewed certificate is served from the next
handshake on, with no reload.

The answer comes from the inventory only: the handler never waits on the network. For a
name no site has, it hands the name to the on-demand policy (ondemand.py), which decides
in the background.

The endpoint hands out private keys, so it has a listener of its own
(`--cert-listen`), answers only clients in `allow` (loopback by default; 403 otherwise),
and with a token, only requests whose `token` query parameter is it (Caddy keeps the
query of the URL it is given).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter
from collections.abc import Sequence

from aiohttp import web

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import CertVersion
from acmekit.fleet.ondemand import OnDemand, host_name
from acmekit.webguard import browser_guard

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


class CertEndpoint:
    def __init__(
        self,
        inventory: Inventory,
        on_demand: OnDemand | None = None,
        allow: Sequence[Network] = LOOPBACK,
        token: str | None = None,
    ) -> None:
        self.inventory = inventory
        self.on_demand = on_demand
        self.allow = tuple(allow)
        self.token = token
        self.answers: Counter[str] = Counter()  # served, unknown, refused

    def permitted(self, request: web.Request) -> bool:
        try:
            remote = ipaddress.ip_address((request.remote or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(remote, ipaddress.IPv6Address) and remote.ipv4_mapped is not None:
            remote = remote.ipv4_mapped
        if not any(remote in net for net in self.allow):
            return False
        if self.token is None:
            return True
        given = request.query.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def certificate(self, name: str) -> tuple[CertVersion | None, bool]:
        """(the current certificate for `name`, whether a site has the name at all)."""
        sites = self.inventory.sites
        site_id = self.inventory.names.holder(name)
        if site_id is None and name.count(".") >= 2:
            site_id = self.inventory.names.holder("*." + name.split(".", 1)[1])
        site = None if site_id is None else sites.site(site_id)
        if site is None:
            return None, False
        return sites.current(site), True

    async def handle(self, request: web.Request) -> web.Response:
        if not self.permitted(request):
            self.answers["refused"] += 1
            return web.Response(status=403, text="not allowed")
        name = host_name(request.query.get("server_name", ""))
        cert, known = (None, False) if name is None else self.certificate(name)
        if cert is None:
            self.answers["unknown"] += 1
            if name is not None and not known and self.on_demand is not None:
                self.on_demand.seen(name)
            return web.Response(status=204)
        self.answers["served"] += 1
        body = cert.fullchain_pem.rstrip("\n") + "\n" + cert.key_pem
        return web.Response(
            text=body,
            content_type="application/x-pem-file",
            headers={"Cache-Control": "no-store"},
        )


ENDPOINT = web.AppKey("endpoint", CertEndpoint)


async def _handle(request: web.Request) -> web.Response:
    return await request.app[ENDPOINT].handle(request)


def cert_app(endpoint: CertEndpoint) -> web.Application:
    """Without a token, a client on an allowed address is trusted: a browser there, made
    to ask through a rebound name, would be too, and read private keys. So without a
    token only an IP address or `localhost` is answered as Host (acmekit.webguard)."""
    guard = browser_guard(check_host=endpoint.token is None, exempt=lambda _: False)
    app = web.Application(middlewares=[guard])
    app[ENDPOINT] = endpoint
    app.router.add_get("/certificate", _handle)
    return app


def parse_network(text: str) -> Network:
    """An address or CIDR block, as `--cert-allow` takes it."""
    return ipaddress.ip_network(text, strict=False)

"""The fleet's HTTP API (aiohttp.web): JSON for sites, the http-01 responder, metrics.

  POST   /domains  {"names": [...], "method": "http-01", "backup": false}  -> 201, the site
  GET    /domains?state=S&after=ID&limit=N                              -> {"domains", "next"}
  GET    /domains/{id}                                                  -> the site
  DELETE /domains/{id}           stop renewing, remove from edges       -> 202, the site
  POST   /domains/{id}/renew     renew now                              -> 202, the site
  GET    /.well-known/acme-challenge/{token}  (edges forward this path to the fleet)
  GET    /metrics                Prometheus text format (fleet-wide figures per CA too,
                                 on-demand sites, the DNS API's secondaries)
  GET    /  and  /status         the status page: plain HTML (see status.py)

A site as JSON carries its current certificate (with the CA that issued it), its
backup certificate if it keeps one, its options, and, for a dns-01 site when the fleet
knows its delegation zone, the CNAME each name needs (`delegation`; a dns-account-01
site's, one per name and per CA account, at the account's label), and for a
dns-persist-01 site the TXT records its owner publishes once (`persist_records`).

Errors are problem documents (RFC 7807) with `application/problem+json`. A name
belongs to one site at most: adding a site with a name that a site not removed has
answers 409, and the document names both (`name`, `site_id`). A site that needs dns-01
(a wildcard, or `"method": "dns-01"`) on a fleet without a DNS API answers 422 with what
to configure (capability.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web

from acmekit.fleet.capability import refusal
from acmekit.fleet.ctstatus import CtCompliance, ct_gauges, ct_section
from acmekit.fleet.delegation import account_delegations, delegation_target
from acmekit.fleet.dnssecondaries import DnsSecondaries
from acmekit.fleet.inventory import Inventory, NameTaken
from acmekit.fleet.metrics import (
    EXPIRY_HORIZONS,
    SOONEST,
    CaCertificates,
    FleetFigures,
    FleetMetrics,
    SiteCertificate,
    secondary_gauges,
    summarize,
    window_start,
)
from acmekit.fleet.model import (
    BackupCert,
    CertVersion,
    ChallengeMethod,
    Site,
    SiteState,
    from_us,
    normalize_names,
)
from acmekit.fleet.ondemand import OnDemand, metrics_lines
from acmekit.fleet.persist import records_for, templates
from acmekit.fleet.repos.sites import OptionsChange, SiteDetails, SiteRepository
from acmekit.fleet.status import (
    StatusReport,
    collect,
    on_demand_section,
    render,
    secondaries_section,
)
from acmekit.webguard import browser_guard

INVENTORY = web.AppKey("inventory", Inventory)
METRICS = web.AppKey("metrics", FleetMetrics)
NOW: web.AppKey[Callable[[], int]] = web.AppKey("now")
CAS: web.AppKey[tuple[str, ...]] = web.AppKey("cas")
ZONE: web.AppKey[str | None] = web.AppKey("delegation_zone")
DNS01: web.AppKey[bool] = web.AppKey("dns01")
ON_DEMAND: web.AppKey[OnDemand | None] = web.AppKey("on_demand")
CT: web.AppKey[CtCompliance | None] = web.AppKey("ct")
SECONDARIES: web.AppKey[DnsSecondaries | None] = web.AppKey("dns_secondaries")
MAX_PAGE = 1000
T = TypeVar("T")


def _time(us: int | None) -> str | None:
    return None if us is None else from_us(us).isoformat().replace("+00:00", "Z")


def _cert_json(cert: CertVersion | BackupCert | None) -> dict[str, Any] | None:
    if cert is None:
        return None
    found: dict[str, Any] = {
        "serial": cert.serial,
        "not_before": _time(cert.not_before),
        "not_after": _time(cert.not_after),
        "ca": cert.ca,
    }
    if isinstance(cert, CertVersion):
        found = {"version": cert.version, **found}
    return found


def delegation(
    site: Site, zone: str | None, accounts: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """`_acme-challenge` name -> the CNAME target a customer sets, for a dns-01 site;
    for a dns-account-01 site, one per name and per account (`accounts`: CA -> account
    URL, those the fleet has registered), each at the account's label."""
    wildcard = any(n.startswith("*.") for n in site.names)
    if site.method == ChallengeMethod.DNS_PERSIST_01:
        return None  # validated from the owner's standing record (persist_records)
    if site.method == ChallengeMethod.DNS_ACCOUNT_01:
        return None if zone is None else account_delegations(site.names, zone, accounts or {})
    if zone is None or (site.method != ChallengeMethod.DNS_01 and not wildcard):
        return None
    bases = dict.fromkeys(n.removeprefix("*.") for n in site.names)
    return {f"_acme-challenge.{n}.": delegation_target(n, zone) for n in bases}


def site_json(inventory: Inventory, site: Site, zone: str | None = None) -> dict[str, Any]:
    return sites_json(inventory, [site], zone)[0]


def sites_json(
    inventory: Inventory, page: Sequence[Site], zone: str | None = None
) -> list[dict[str, Any]]:
    """`page` as JSON, read in a fixed number of statements however long it is."""
    details = inventory.sites.details(page)
    accounts = inventory.cas.account_urls()
    persist = templates(inventory) if any(_persists(s) for s in page) else {}
    return [_one_json(s, details[s.id], zone, accounts, persist) for s in page]


def _persists(site: Site) -> bool:
    return site.method == ChallengeMethod.DNS_PERSIST_01


def _one_json(
    site: Site,
    found: SiteDetails,
    zone: str | None,
    accounts: Mapping[str, str],
    persist: dict[str, dict[str, str]],
) -> dict[str, Any]:
    options = found.options
    wildcard = any(n.startswith("*.") for n in site.names)
    return {
        "id": site.id,
        "names": list(site.names),
        "method": str(site.method),
        "desired": str(site.desired),
        "state": str(site.state),
        "created": _time(site.created),
        "next_action_at": _time(site.next_action_at),
        "renew_at": _time(site.renew_at),
        "failure_count": site.failure_count,
        "last_problem": site.last_problem,
        "certificate": _cert_json(found.current),
        "backup": _cert_json(found.backup),
        "options": {
            "backup": options.backup,
            "next_check": _time(options.next_check),
            "order_ca": options.order_ca,
        },
        "delegation": delegation(site, zone, accounts),
        # dns-persist-01: the standing records the owner publishes once (persist.py).
        "persist_records": records_for(site.names, persist, wildcard) if _persists(site) else None,
        "deployments": {
            edge: {"version": d.version, "updated": _time(d.updated), "error": d.last_error}
            for edge, d in found.deployments.items()
        },
    }


def _site_json(request: web.Request, site: Site) -> dict[str, Any]:
    return site_json(request.app[INVENTORY], site, request.app.get(ZONE))


def _problem(status: int, detail: str, **members: str) -> web.Response:
    """A problem document; `members` are extension members (RFC 7807 §3.2)."""
    doc = {"type": "about:blank", "status": status, "detail": detail, **members}
    return web.Response(
        status=status, text=json.dumps(doc), content_type="application/problem+json"
    )


def _site_or_404(request: web.Request) -> Site | web.Response:
    site = request.app[INVENTORY].sites.site(request.match_info["id"])
    return _problem(404, "no such domain") if site is None else site


async def _add(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("names"), list):
            raise TypeError("names is a list")
        names = normalize_names(body["names"])
        method = ChallengeMethod(body.get("method", ChallengeMethod.HTTP_01))
        backup = body.get("backup", False)
        if not isinstance(backup, bool):
            raise TypeError("backup is true or false")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        expected = "{'names': [...], 'method': 'http-01', 'backup': false}"
        return _problem(400, f"expected {expected}: {exc}")
    refused = refusal(names, method, request.app[DNS01])
    if refused is not None:
        return _problem(422, refused)
    inventory = request.app[INVENTORY]
    try:
        site = inventory.sites.add_site(names, method, request.app[NOW]())
    except NameTaken as exc:
        return _problem(409, str(exc), name=exc.name, site_id=exc.site_id)
    if backup:
        inventory.sites.set_options(site.id, OptionsChange(backup=True))
    return web.json_response(
        _site_json(request, site), status=201, headers={"Location": f"/domains/{site.id}"}
    )


async def _get(request: web.Request) -> web.Response:
    site = _site_or_404(request)
    if isinstance(site, web.Response):
        return site
    return web.json_response(_site_json(request, site))


async def _list(request: web.Request) -> web.Response:
    try:
        state = SiteState(request.query["state"]) if "state" in request.query else None
        text = request.query.get("limit", "100")
        # ASCII digits only: int() also reads other scripts' digits, a sign, spaces and "_".
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"limit is 1 to {MAX_PAGE}")
        limit = min(int(text), MAX_PAGE)
        if limit < 1:
            raise ValueError(f"limit is 1 to {MAX_PAGE}")
    except ValueError as exc:
        return _problem(400, str(exc))
    inventory, zone, after = (
        request.app[INVENTORY],
        request.app.get(ZONE),
        request.query.get("after", ""),
    )

    def read() -> dict[str, Any]:
        found = inventory.sites.page(state, after, limit)
        return {
            "domains": sites_json(inventory, found, zone),
            "next": found[-1].id if len(found) == limit else None,
        }

    # A page is up to MAX_PAGE sites: read off the loop that serves http-01 too.
    return web.json_response(await _off_loop(request.app, read))


async def _change(
    request: web.Request, act: Callable[[SiteRepository, str, int], bool]
) -> web.Response:
    site = _site_or_404(request)
    if isinstance(site, web.Response):
        return site
    inventory = request.app[INVENTORY]
    if not act(inventory.sites, site.id, request.app[NOW]()):
        return _problem(409, f"domain {site.id} is {site.desired}")
    changed = inventory.sites.site(site.id)
    assert changed is not None
    return web.json_response(_site_json(request, changed), status=202)


async def _delete(request: web.Request) -> web.Response:
    return await _change(request, SiteRepository.remove_site)


async def _renew(request: web.Request) -> web.Response:
    return await _change(request, SiteRepository.force_renewal)


async def _challenge(request: web.Request) -> web.Response:
    answer = request.app[INVENTORY].challenges.key_authorization(request.match_info["token"])
    if answer is None:
        return web.Response(status=404, text="no such challenge")
    return web.Response(text=answer, content_type="text/plain")


def _off_loop(app: web.Application, work: Callable[..., T], *args: Any) -> Awaitable[T]:
    """`work(*args)` in a thread, so that the loop serving the http-01 responder goes on.
    An in-memory SQLite inventory keeps one database per thread: there, on the loop."""
    if isinstance(app[INVENTORY].engine.pool, sa.pool.SingletonThreadPool):
        return _done(work(*args))
    return asyncio.to_thread(work, *args)


async def _done(value: T) -> T:
    return value


def _inventory_metrics(app: web.Application, now: int) -> str:
    """The exposition's inventory part: a fixed number of statements, each counted or
    bounded by the database, whatever the number of sites (the CT part aside, which
    judges every site's chain)."""
    inventory, cas = app[INVENTORY], app[CAS]
    recent = summarize(inventory.cas.stats(window_start(now)), cas)
    counts = inventory.sites.counts_by_state()
    figures = FleetFigures(
        [SiteCertificate(*row) for row in inventory.sites.soonest_expiring(SOONEST)],
        inventory.sites.renewal_due_count(now),
        counts[SiteState.FAILING],
        [
            CaCertificates(*row)
            for row in inventory.sites.certificates_by_ca(now, [h for h, _ in EXPIRY_HORIZONS])
        ],
    )
    text = app[METRICS].render(counts, recent, figures=figures)
    kept = inventory.on_demand.kept(SOONEST)
    lines = metrics_lines(inventory.on_demand.count(), kept, app.get(ON_DEMAND))
    text += "\n".join(lines) + "\n"
    compliance = app.get(CT)
    if compliance is not None:
        sites = compliance.sites(inventory.sites.current_chains())
        text += "\n".join(ct_gauges(sites)) + "\n"
    return text


async def _metrics(request: web.Request) -> web.Response:
    # The database work runs in a thread: the loop also serves the http-01 responder.
    text = await _off_loop(request.app, _inventory_metrics, request.app, request.app[NOW]())
    secondaries = request.app.get(SECONDARIES)
    if secondaries is not None:
        text += "\n".join(secondary_gauges(await secondaries.report())) + "\n"
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def _status_parts(app: web.Application, now: int) -> tuple[StatusReport, list[tuple[str, str]]]:
    """The status page's inventory part: bounded lists (status.py), and the CT table."""
    cas = app.get(CAS)
    inventory = app[INVENTORY]
    report = collect(inventory, app[METRICS], now, cas or (), zone=app.get(ZONE))
    extra = [on_demand_section(inventory.on_demand.count(), inventory.on_demand.recent())]
    compliance = app.get(CT)
    if compliance is not None:
        sites = compliance.sites(inventory.sites.current_chains())
        extra.append(("Certificate Transparency", ct_section(sites)))
    return report, extra


async def _status(request: web.Request) -> web.Response:
    app = request.app
    # In a thread, as /metrics: the loop also serves the http-01 responder.
    report, extra = await _off_loop(app, _status_parts, app, app[NOW]())
    secondaries = app.get(SECONDARIES)
    if secondaries is not None:
        extra.append(secondaries_section(await secondaries.report()))
    return web.Response(
        text=render(report, extra),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


CHALLENGE_PATH = "/.well-known/acme-challenge/{token}"


def _is_challenge(path: str) -> bool:
    """The http-01 responder's path: asked by the CA, through edges, under sites' names."""
    return path.startswith("/.well-known/acme-challenge/")


def _token_middleware(token: str | None) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None and not _is_challenge(request.path):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _problem(401, "missing or wrong API token")
        return await handler(request)

    return middleware


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def challenge_app(inventory: Inventory) -> web.Application:
    """Only the http-01 responder, for its own listener (the CA connects to port 80)."""
    app = web.Application()
    app[INVENTORY] = inventory
    app.router.add_get(CHALLENGE_PATH, _challenge)
    return app


def api_app(
    inventory: Inventory,
    metrics: FleetMetrics,
    now: Callable[[], int],
    *,
    cas: Sequence[str] = (),
    delegation_zone: str | None = None,
    dns01: bool = True,
    on_demand: OnDemand | None = None,
    ct: CtCompliance | None = None,
    dns_secondaries: DnsSecondaries | None = None,
    token: str | None = None,
) -> web.Application:
    """The API; `cas` (in order) are shown with their health on the status page,
    `delegation_zone` gives dns-01 sites their CNAME targets, without `dns01` (no DNS
    API) a site that needs dns-01 is refused with 422, `on_demand`'s verdicts are
    counted in /metrics, and `dns_secondaries` (the DNS API's) are shown on both. With
    `token`, every request but the http-01 responder's needs `Authorization: Bearer
    TOKEN`; without, the API is kept from the host's browser (acmekit.webguard: Hosts
    that are IP addresses or localhost only, no changes asked from another origin)."""
    guard = browser_guard(check_host=token is None, exempt=_is_challenge)
    app = web.Application(middlewares=[guard, _token_middleware(token)])
    app[INVENTORY] = inventory
    app.router.add_get(CHALLENGE_PATH, _challenge)
    app[METRICS] = metrics
    app[NOW] = now
    app[CAS] = tuple(cas)
    app[ZONE] = delegation_zone
    app[DNS01] = dns01
    app[ON_DEMAND] = on_demand
    app[CT] = ct
    app[SECONDARIES] = dns_secondaries
    app.router.add_post("/domains", _add)
    app.router.add_get("/domains", _list)
    app.router.add_get("/domains/{id}", _get)
    app.router.add_delete("/domains/{id}", _delete)
    app.router.add_post("/domains/{id}/renew", _renew)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", _status)
    app.router.add_get("/status", _status)
    return app

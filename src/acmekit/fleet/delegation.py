"""dns-01 for customers' names through CNAME delegation into a zone `acmekit dns` serves.

A customer adds one record, once, at their DNS provider:

    _acme-challenge.shop.example.com.  CNAME  <label>.<delegation zone>.

From then on the fleet publishes every dns-01 answer for `shop.example.com` (and for
`*.shop.example.com`, which is validated at the same name, RFC 8555 §8.4) at the end of
that chain, in a zone it controls, and the customer's provider needs no API. The
client's Dns01Solver (follow_cname=True) follows the chain; `AcmekitDnsProvider` puts
the TXT there through `acmekit dns`'s HTTP API (`/set-txt`, `/clear-txt`).

`DelegationCheck` says whether every name of a site is delegated (its `_acme-challenge`
CNAME chain ends under the delegation zone): the worker's http-01 orders fall back to
dns-01 when it does (acme.py), and wildcard sites need it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import dns.exception

from acmekit.client.solvers.dnslookup import Server, absolute, follow_cname
from acmekit.client.solvers.errors import SolverError
from acmekit.protocol import dnsaccount
from acmekit.protocol.challenges import dns01_record_name

log = logging.getLogger(__name__)


MAX_LABEL = 63


class DnsApiError(Exception):
    """The DNS server's API refused or could not be reached."""


class AcmekitDnsProvider:
    """A DnsProvider (client.solvers.dns01) over `acmekit dns`'s API. The API clears
    all TXT values at a name at once, so `remove_txt` does: the solver removes a
    record only after every validation that needed the name is over."""

    def __init__(self, api_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _post(self, path: str, doc: dict[str, Any]) -> None:
        url = self.api_url + path
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as http,
                http.post(url, json=doc, headers=self._headers) as resp,
            ):
                if resp.status >= 300:
                    detail = (await resp.text())[:300]
                    raise DnsApiError(f"POST {url}: {resp.status} {detail}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DnsApiError(f"POST {url}: {exc or type(exc).__name__}") from exc

    async def add_txt(self, fqdn: str, value: str) -> None:
        await self._post("/set-txt", {"host": fqdn, "value": value})

    async def remove_txt(self, fqdn: str, value: str) -> None:
        await self._post("/clear-txt", {"host": fqdn})

    async def set_cname(self, fqdn: str, target: str) -> None:
        """Publish a CNAME (what a customer does at their provider; for drills and tests)."""
        await self._post("/set-cname", {"host": fqdn, "target": target})


def delegation_target(name: str, zone: str) -> str:
    """Where the fleet asks a customer to point `_acme-challenge.NAME`: one label per
    name under `zone` (the name's dots become dashes), e.g. `shop-example-com.ZONE.`;
    for a name longer than a label may be, its start and a digest of it."""
    base = name.lower().rstrip(".").removeprefix("*.")
    label = delegation_label(base)
    if label is None:
        # A label holds 63 octets (RFC 1035 §2.3.4): the name's start, then a digest of
        # the whole name, so that names alike in their first characters stay apart.
        digest = hashlib.sha256(base.encode()).hexdigest()[:16]
        label = f"{base.replace('.', '-')[: MAX_LABEL - len(digest) - 1]}-{digest}"
    return absolute(f"{label}.{zone}")


def delegation_label(name: str) -> str | None:
    """The label of `delegation_target` for a name (a wildcard's for its base name):
    its dots written as dashes; None for one longer than a label may be, whose target
    holds a digest of it, shared with no other name."""
    label = name.removeprefix("*.").replace(".", "-")
    return label if len(label) <= MAX_LABEL else None


MAX_TWIN_SEPARATORS = 10  # beyond, `delegation_twins` gives up (2**10 names to look up)


def delegation_twins(name: str) -> list[str] | None:
    """The other names, each also as a wildcard, whose `delegation_target` is NAME's:
    the label writes dots as dashes, so `my-shop.example.com` and `my.shop-example.com`
    share one, and a customer holding one could make the other's dns-01 fail (and read
    its TXT records). None when NAME has too many dots and dashes to list them all.
    A name too long for one label has a digest of itself in its target: no twin."""
    base = name.lower().rstrip(".").removeprefix("*.")
    if len(base) > MAX_LABEL:
        return []
    seps = [i for i, ch in enumerate(base) if ch in ".-"]
    if len(seps) > MAX_TWIN_SEPARATORS:
        return None
    twins: list[str] = []
    for choice in itertools.product(".-", repeat=len(seps)):
        chars = list(base)
        for i, ch in zip(seps, choice, strict=True):
            chars[i] = ch
        twin = "".join(chars)
        labels = twin.split(".")
        # Only DNS names (RFC 1035 §2.3.1): no empty label, none starting or ending in "-".
        if twin == base or len(labels) < 2:
            continue
        if any(not x or x.startswith("-") or x.endswith("-") for x in labels):
            continue
        twins.extend((twin, f"*.{twin}"))
    return twins


def account_delegation_target(name: str, zone: str, account_url: str) -> str:
    """Where a customer points dns-account-01's `_<label>._acme-challenge.NAME`: the
    account's label under the name's own, e.g. `_ujmmovf2vn55tgye.shop-example-com.ZONE.`
    Each account (this fleet's at each CA, another CDN's) gets a name of its own in a
    shared zone, so clearing one account's TXT never clears another's
    (draft-ietf-acme-dns-account-label-03 §1)."""
    label = dnsaccount.account_label(account_url)
    return absolute(f"{label}.{delegation_target(name, zone)}")


def account_delegations(
    names: Sequence[str], zone: str, accounts: Mapping[str, str]
) -> dict[str, str]:
    """dns-account-01's CNAMEs for `names`: record -> target, per name and per account
    (`accounts`: CA -> account URL)."""
    found: dict[str, str] = {}
    for base in dict.fromkeys(n.lower().removeprefix("*.") for n in names):
        for url in accounts.values():
            record = absolute(dnsaccount.record_name(base, url))
            found[record] = account_delegation_target(base, zone, url)
    return found


class DelegationCheck:
    """Whether each name's `_acme-challenge` record is a CNAME chain ending under
    `zone`, asked of `resolver` (always given: no system resolver is assumed)."""

    def __init__(self, resolver: Server, zone: str) -> None:
        self.resolver = resolver
        self.zone = absolute(zone)

    async def target(self, name: str) -> str | None:
        """The end of the chain for `name` if it is delegated under the zone."""
        start = absolute(dns01_record_name(name.removeprefix("*.")))
        try:
            end = await follow_cname(self.resolver, start)
        except (OSError, dns.exception.DNSException, SolverError) as exc:
            log.info("delegation of %s: %s", name, exc)
            return None
        inside = end == self.zone or end.endswith("." + self.zone)
        return end if end != start and inside else None

    async def __call__(self, names: Sequence[str]) -> bool:
        for name in names:
            if await self.target(name) is None:
                return False
        return True

"""dns-persist-01 for fleet sites (draft-ietf-acme-dns-persist-02): what a customer
publishes once.

A record depends on the CA (its issuer domain name and accountHashPrefix, from its
directory) and the fleet's account there (URL and key thumbprint), never on an order
(§4.5). When a CA's account is known, the fleet keeps those values in its settings
(`remember`), so the API and status page can show a site's records before its first
order, one record per CA at `_validation-persist.NAME` (§4.3: several CAs side by side).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from acmekit.client import Client
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, Site
from acmekit.protocol import dnspersist
from acmekit.protocol.jose import thumbprint

log = logging.getLogger(__name__)

SETTING = "dns-persist-01"


async def remember(client: Client, ca: str, inventory: Inventory) -> None:
    """Keep what `ca`'s records need; nothing if the CA does not offer dns-persist-01."""
    info = await client.account_info()
    if not info.account_hash_prefix or not info.issuer_domain_names:
        return
    # The name goes as it is into the record customers are told to publish: a CA's
    # `ca.example; policy=wildcard` would be a parameter of the CA's making (§3.1).
    try:
        issuer = dnspersist.check_issuer_domain_names(info.issuer_domain_names)[0]
    except ValueError as exc:
        log.warning("%s: no dns-persist-01 records: %s", ca, exc)
        return
    known = templates(inventory)
    known[ca] = {
        "issuer": issuer,
        "account_hash_prefix": info.account_hash_prefix,
        "account_url": info.account_url,
        "thumbprint": thumbprint(info.account_key),
    }
    if known != templates(inventory):
        inventory.settings.store(SETTING, json.dumps(known, sort_keys=True))


def templates(inventory: Inventory) -> dict[str, dict[str, str]]:
    """What each CA's records need, by CA name (those the fleet has an account at)."""
    raw = inventory.settings.value(SETTING)
    found = json.loads(raw) if raw else {}
    return found if isinstance(found, dict) else {}


def site_records(inventory: Inventory, site: Site) -> list[dict[str, Any]] | None:
    """The records a dns-persist-01 site's owner publishes (None for other sites): for
    each base name and each CA the fleet knows an account at, one TXT record; with a
    wildcard among the names, policy=wildcard."""
    if site.method != ChallengeMethod.DNS_PERSIST_01:
        return None
    wildcard = any(n.startswith("*.") for n in site.names)
    return records_for(site.names, templates(inventory), wildcard)


def records_for(
    names: Sequence[str], templates: dict[str, dict[str, str]], wildcard: bool
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for base in dict.fromkeys(dnspersist.normalize_domain(n.removeprefix("*.")) for n in names):
        for ca, t in sorted(templates.items()):
            if not dnspersist.is_issuer_domain_name(t.get("issuer")):
                continue  # kept before the names were checked (remember)
            uri = dnspersist.hashed_account_uri(
                t["account_hash_prefix"], t["account_url"], t["thumbprint"], base
            )
            value = dnspersist.render_record(t["issuer"], uri, wildcard)
            out.append({"ca": ca, "name": dnspersist.record_name(base) + ".", "value": value})
    return out


__all__ = ["SETTING", "records_for", "remember", "site_records", "templates"]

"""ACME resources as JSON (RFC 8555 §7.1), and the URLs that name them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from acmekit.protocol import jsontext
from acmekit.protocol.messages import ChallengeType, Identifier, OrderStatus
from acmekit.server import paths
from acmekit.server.ari import Window
from acmekit.server.authority import AuthzView, OrderView
from acmekit.server.config import ServerConfig
from acmekit.server.profiles import descriptions
from acmekit.server.records import AccountRecord, ChallengeRecord

# "00" to "99": the two-digit fields of a time, looked up rather than formatted
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))


def rfc3339(t: datetime) -> str:
    """`t` (UTC) to the second, as RFC 3339 §5.6 writes it: four digits of year (years
    1 to 9999, all a datetime holds) and two of each other field, looked up. `isoformat`
    wrote the same at three times the instructions, with C's printf for each field
    (code no other part of most requests runs: docs/decisions.md, "The CA's working
    set per certificate"); `strftime`'s %Y drops the zeros below 1000."""
    two, year = _TWO_DIGITS, t.year
    return (
        f"{two[year // 100]}{two[year % 100]}-{two[t.month]}-{two[t.day]}"
        f"T{two[t.hour]}:{two[t.minute]}:{two[t.second]}Z"
    )


@dataclass(frozen=True)
class Urls:
    """Every URL the CA hands out: a path of acmekit.server.paths under the base the
    client reached the CA at."""

    base: str

    @property
    def directory(self) -> str:
        return self.base + paths.DIRECTORY.path()

    @property
    def account_prefix(self) -> str:
        return self.base + paths.ACCOUNT.path()

    def account(self, account_id: str) -> str:
        return self.base + paths.ACCOUNT.path(account_id)

    def account_orders(self, account_id: str) -> str:
        return self.base + paths.ACCOUNT_ORDERS.path(account_id)

    def account_orders_page(self, account_id: str, after: tuple[int, str]) -> str:
        page = f"{account_id}~{after[0]}-{after[1]}"
        return self.base + paths.ACCOUNT_ORDERS_PAGE.path(page)

    def order(self, order_id: str) -> str:
        return self.base + paths.ORDER.path(order_id)

    def finalize(self, order_id: str) -> str:
        return self.base + paths.FINALIZE.path(order_id)

    def authz(self, authz_id: str) -> str:
        return self.base + paths.AUTHZ.path(authz_id)

    def challenge(self, challenge_id: str) -> str:
        return self.base + paths.CHALLENGE.path(challenge_id)

    def certificate(self, cert_id: str) -> str:
        return self.base + paths.CERTIFICATE.path(cert_id)

    def resource(self, endpoint: paths.Endpoint) -> str:
        """An endpoint without an id (newOrder, keyChange, the issuer certificate...)."""
        return self.base + endpoint.path()


def directory(urls: Urls, config: ServerConfig) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "caaIdentities": list(config.caa_identities),
        "externalAccountRequired": config.eab_required,
        "profiles": descriptions(config.all_profiles),
    }
    if config.terms_of_service:
        meta["termsOfService"] = config.terms_of_service
    if config.website:
        meta["website"] = config.website
    if config.offers_dns_persist:
        # draft-ietf-acme-dns-persist-02 §3.2 and §4.1: what pre-provisioning needs.
        meta["issuerDomainNames"] = list(config.persist_issuers)
        meta["accountHashPrefix"] = config.persist_hash_prefix(urls.base)
    return {
        "newNonce": urls.resource(paths.NEW_NONCE),
        "newAccount": urls.resource(paths.NEW_ACCOUNT),
        "newOrder": urls.resource(paths.NEW_ORDER),
        "revokeCert": urls.resource(paths.REVOKE_CERT),
        "keyChange": urls.resource(paths.KEY_CHANGE),
        "renewalInfo": urls.resource(paths.RENEWAL_INFO),
        "meta": meta,
    }


def account(urls: Urls, rec: AccountRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": str(rec.status),
        "contact": list(rec.contact),
        "orders": urls.account_orders(rec.id),
        "createdAt": rfc3339(rec.created),
    }
    if rec.eab_kid:
        doc["externalAccountBinding"] = {"kid": rec.eab_kid}
    return doc


# The JSON texts of a challenge, an authorization and an order (RFC 8555 §7.1.4, §7.1.3),
# as the app sends them: the bytes `jsontext.dumps` gives for the documents as dicts
# (json.dumps's ", " and ": ", ASCII with json's escapes), written with the keys as
# literals and each string value through json's own string encoder (the C function its
# encoder calls). The encoder's walk over a dict made for it encoded every key again on
# every request: an authorization's text cost some 55,000 instructions more that way
# (docs/decisions.md). tests/unit/test_render_json_texts.py keeps the documents as dicts
# and compares the two over every optional field, odd characters and errors.
_quoted: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _value_text(value: Any) -> str:
    """A value of any shape (a problem document) through jsontext's encoder."""
    return jsontext.dumps(value).decode("ascii")


def _strings_text(strings: Sequence[str]) -> str:
    return "[" + ", ".join(map(_quoted, strings)) + "]"


def _identifier_text(ident: Identifier) -> str:
    return '{"type": ' + _quoted(ident.type) + ', "value": ' + _quoted(ident.value) + "}"


# A challenge's URL is its id after a fixed prefix (the template ends in its id): an
# authorization's challenges are named from the prefix, made once, not by two calls each.
assert paths.CHALLENGE.template.endswith("{}") and paths.CHALLENGE.template.count("{}") == 1


def _challenge_parts(
    parts: list[str], prefix: str, ch: ChallengeRecord, issuers: Sequence[str]
) -> None:
    """`challenge`'s text, appended to `parts`; `prefix` is `urls.challenge("")`."""
    parts += ('{"type": ', _quoted(ch.type), ', "url": ', _quoted(prefix + ch.id))
    parts += (', "status": ', _quoted(ch.status))
    if ch.type == ChallengeType.DNS_PERSIST_01:
        parts += (', "issuerDomainNames": ', _strings_text(issuers))
    else:
        parts += (', "token": ', _quoted(ch.token))
    if ch.validated is not None:
        parts += (', "validated": ', _quoted(rfc3339(ch.validated)))
    if ch.error is not None:
        parts += (', "error": ', _value_text(ch.error))
    parts.append("}")


def challenge_json(urls: Urls, ch: ChallengeRecord, issuers: Sequence[str] = ()) -> bytes:
    """A challenge object (§7.1.5); dns-persist-01's carries the issuer names, no token."""
    parts: list[str] = []
    _challenge_parts(parts, urls.challenge(""), ch, issuers)
    return "".join(parts).encode("ascii")


def authorization_json(urls: Urls, view: AuthzView, issuers: Sequence[str] = ()) -> bytes:
    """An authorization object (§7.1.4), its status derived (`view`)."""
    rec = view.record
    parts = ['{"identifier": ', _identifier_text(rec.identifier), ', "status": ']
    parts += (_quoted(view.status), ', "expires": ', _quoted(rfc3339(rec.expires)))
    parts.append(', "challenges": [')
    prefix = urls.challenge("")
    first = True
    for ch in rec.challenges:
        if not first:
            parts.append(", ")
        first = False
        _challenge_parts(parts, prefix, ch, issuers)
    parts.append("]")
    if rec.wildcard:
        parts.append(', "wildcard": true')
    parts.append("}")
    return "".join(parts).encode("ascii")


def order_json(urls: Urls, view: OrderView) -> bytes:
    """An order object (§7.1.3): its certificate's URL only once it is valid."""
    rec = view.record
    parts = ['{"status": ', _quoted(view.status), ', "expires": ', _quoted(rfc3339(rec.expires))]
    identifiers = []
    for ident in rec.identifiers:
        identifiers.append(_identifier_text(ident))
    authorizations = []
    for authz_id in rec.authz_ids:
        authorizations.append(_quoted(urls.authz(authz_id)))
    parts += (', "identifiers": [', ", ".join(identifiers), '], "authorizations": [')
    parts += (", ".join(authorizations), '], "finalize": ', _quoted(urls.finalize(rec.id)))
    if rec.profile:
        parts += (', "profile": ', _quoted(rec.profile))
    if rec.replaces:
        parts += (', "replaces": ', _quoted(rec.replaces))
    if view.status == OrderStatus.VALID and rec.certificate_id:
        parts += (', "certificate": ', _quoted(urls.certificate(rec.certificate_id)))
    error = view.error
    if error is not None:
        parts += (', "error": ', _value_text(error))
    parts.append("}")
    return "".join(parts).encode("ascii")


def renewal_info(window: Window) -> dict[str, Any]:
    return {"suggestedWindow": {"start": rfc3339(window.start), "end": rfc3339(window.end)}}

"""dns-account-01 (draft-ietf-acme-dns-account-label-03): dns-01 at an account-scoped name.

The TXT value is dns-01's (RFC 8555 §8.4: base64url(SHA-256(key authorization))); only
the owner name differs, so that several ACME accounts (a CDN and the domain's own
automation, two CDNs) can each validate the same name without touching one another's
records (draft §3):

    "_" || base32(SHA-256(ACCOUNT_URL)[0:10]) || "._acme-challenge." || NAME

base32 is RFC 4648's alphabet, written lowercase (DNS labels are case-insensitive and
every published example is lowercase); ten bytes are exactly sixteen characters, so there
is no padding. A wildcard is validated at its base name, as for dns-01 (§7.1.3).
"""

from __future__ import annotations

import base64
import hashlib

from acmekit.protocol.challenges import DNS01_LABEL, dns01_txt_value

DNS_ACCOUNT_01 = "dns-account-01"
_LABEL_BYTES = 10


def account_label(account_url: str) -> str:
    """The account's label, `_` and sixteen lowercase base32 characters."""
    digest = hashlib.sha256(account_url.encode()).digest()[:_LABEL_BYTES]
    return "_" + base64.b32encode(digest).decode().lower()


def record_name(name: str, account_url: str) -> str:
    """The TXT owner for `name` (a wildcard's base name) and this account."""
    return f"{account_label(account_url)}.{DNS01_LABEL}.{name.removeprefix('*.')}"


def txt_value(key_authorization: str) -> str:
    """The TXT value: exactly dns-01's digest of the key authorization."""
    return dns01_txt_value(key_authorization)


__all__ = ["DNS_ACCOUNT_01", "account_label", "record_name", "txt_value"]

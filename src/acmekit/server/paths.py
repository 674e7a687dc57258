"""Every path the CA serves, written once (RFC 8555 §7.1).

The route table (app.py) matches these and the URLs the CA hands out (render.Urls) are
built from them, so a route and its URL cannot drift apart. Only the HTTP edge (app,
render, auth) sees a URL: the rules and the store deal in resource ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

ID = r"[\w-]+"  # the ids the CA makes: base64url tokens


@dataclass(frozen=True)
class Endpoint:
    """A path with at most one `{}`, where a resource's id goes."""

    template: str
    id_pattern: str = ID

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Matches the whole path; the id, if there is one, is group 1."""
        head, hole, tail = self.template.partition("{}")
        return re.compile(
            re.escape(head) + (f"({self.id_pattern})" if hole else "") + re.escape(tail)
        )

    @cached_property
    def _parts(self) -> tuple[str, str, str]:
        """The template before its `{}`, the `{}` (empty if it has none), and after."""
        return self.template.partition("{}")

    def path(self, ident: str = "") -> str:
        # Joined from the template's parts, split once: several URLs of every response
        # are built here, and `str.format` parsed the template each time.
        head, hole, tail = self._parts
        return head + ident + tail if hole else head


DIRECTORY = Endpoint("/directory")
NEW_NONCE = Endpoint("/acme/new-nonce")
NEW_ACCOUNT = Endpoint("/acme/new-account")
NEW_ORDER = Endpoint("/acme/new-order")
REVOKE_CERT = Endpoint("/acme/revoke-cert")
KEY_CHANGE = Endpoint("/acme/key-change")
ACCOUNT = Endpoint("/acme/acct/{}")
ACCOUNT_ORDERS = Endpoint("/acme/acct/{}/orders")
# RFC 8555 §7.1.2.1: the list comes in pages, each linking the next (rel="next"); a page
# after the first is named by the account and the last order shown: ACCOUNT~CREATED-ID.
ACCOUNT_ORDERS_PAGE = Endpoint("/acme/acct-orders/{}", r"[\w~-]+")
ORDER = Endpoint("/acme/order/{}")
FINALIZE = Endpoint("/acme/order/{}/finalize")
AUTHZ = Endpoint("/acme/authz/{}")
CHALLENGE = Endpoint("/acme/chall/{}")
CERTIFICATE = Endpoint("/acme/cert/{}")
ISSUER_CERT = Endpoint("/acme/issuer-cert")
# RFC 9773 §4.1: the directory names the base; a certificate's renewal information is
# at BASE/certID, and a certID holds a "." between its two base64url parts.
RENEWAL_INFO = Endpoint("/acme/renewal-info")
RENEWAL_INFO_CERT = Endpoint(RENEWAL_INFO.template + "/{}", r"[\w.-]+")

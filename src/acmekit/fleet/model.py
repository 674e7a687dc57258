"""The fleet's records: a site, its certificate versions and its deployments per edge.

Enum values are the strings stored in the database and sent over the API.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from acmekit.database import from_us as from_us
from acmekit.database import to_us as to_us
from acmekit.protocol.dnslabels import bad_alabel, reserved_ldh_label
from acmekit.protocol.messages import ascii_lower


class DesiredState(StrEnum):
    ACTIVE = "active"
    REMOVED = "removed"


class SiteState(StrEnum):
    PENDING = "pending"  # added, no certificate yet
    ISSUING = "issuing"  # an order is in flight (or was, when its worker died)
    ACTIVE = "active"  # a current certificate, deployed
    FAILING = "failing"  # repeated failures; still retried with back-off
    REMOVED = "removed"  # removed from every edge, no longer renewed


class ChallengeMethod(StrEnum):
    HTTP_01 = "http-01"
    DNS_01 = "dns-01"
    # draft-ietf-acme-dns-persist-02: the customer publishes one standing record; the
    # fleet never touches their DNS (wildcards too, with policy=wildcard).
    DNS_PERSIST_01 = "dns-persist-01"
    # draft-ietf-acme-dns-account-label-03: dns-01 at the account's own label, through the
    # fleet's DNS API and delegation zone; another CDN (another account) validating the
    # same name through the same zone never touches the fleet's records.
    DNS_ACCOUNT_01 = "dns-account-01"


@dataclass(frozen=True)
class Site:
    id: str
    names: tuple[str, ...]
    method: ChallengeMethod
    desired: DesiredState
    state: SiteState
    created: int  # all times: integer microseconds since the epoch, UTC
    next_action_at: int | None
    renew_at: int | None  # when the current certificate is due (planner's answer)
    current_version: int  # 0: no certificate yet
    lease_owner: str | None
    lease_until: int | None
    failure_count: int
    last_problem: dict[str, Any] | None
    order_url: str | None  # the order in flight, so another worker can finish it
    # the key made for that order (stored before it was opened); kept out of repr
    order_key_pem: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The first name: the directory name on edges and the name shown in lists."""
        return self.names[0]


@dataclass(frozen=True)
class CertVersion:
    site_id: str
    version: int
    serial: str  # hex
    not_before: int
    not_after: int
    fullchain_pem: str
    key_pem: str  # the fleet's own key; never sent anywhere
    issued: int
    ca: str


@dataclass(frozen=True)
class Deployment:
    site_id: str
    edge: str
    version: int  # the version on that edge; 0 for none (or removed)
    updated: int
    failure_count: int
    last_error: str | None


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
MAX_NAMES = 100


def normalize_names(names: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased DNS names, duplicates dropped, order kept; ValueError if any is not a
    host name (an optional leading `*.` allowed) or there are none or too many,
    TypeError if `names` is a string (not a list of them) or holds a non-string."""
    if isinstance(names, str):
        raise TypeError("names is a list of names, not a string")
    out: dict[str, None] = {}  # kept in order; a list's `in` made a long list quadratic
    for raw in names:
        if not isinstance(raw, str):
            raise TypeError(f"{raw!r} is not a string")
        # ASCII before lower-casing: the Kelvin sign (U+212A) lower-cases to "k", and the
        # name would pass for another. `fullmatch`: `$` also matches before a final "\n".
        name = raw.strip().lower().rstrip(".") if raw.isascii() else raw
        labels = name.removeprefix("*.").split(".")
        if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
            raise ValueError(f"{raw!r} is not a DNS name")
        if labels[-1].isdigit():
            # An IPv4 address (no top-level domain is all digits, RFC 3696 §2): the client
            # would order it as an `ip` identifier (RFC 8738), validated at that address.
            raise ValueError(f"{raw!r} is not a DNS name: it ends in a number")
        _check_alabels(raw, name)
        out[name] = None
        if len(out) > MAX_NAMES:  # known too many: the rest is not read
            break
    if not 1 <= len(out) <= MAX_NAMES:
        raise ValueError(f"a site has 1 to {MAX_NAMES} names")
    return tuple(out)


def _check_alabels(raw: str, name: str) -> None:
    """The A-label rules a CA applies to a dns identifier (RFC 5891): a broken `xn--`
    label or a reserved `??--` one is refused when the site is added, in one line, not
    by every CA at each order."""
    label = bad_alabel(name)
    if label is not None:
        raise ValueError(f"{raw!r} is not a DNS name: {label!r} is not a valid IDNA 2008 A-label")
    label = reserved_ldh_label(name)
    if label is not None:
        raise ValueError(f"{raw!r} is not a DNS name: {label!r} is in a reserved form (RFC 5891)")


@dataclass(frozen=True)
class SiteOptions:
    """How a site is kept beyond its names and state (columns of its row)."""

    site_id: str
    backup: bool = False  # keep a certificate from a second CA ready
    order_ca: str | None = None  # the CA of the order in flight (`Site.order_url`)
    next_check: int | None = None  # when to ask the CA about the current certificate (ARI)
    backup_retry_at: int | None = None  # after a failed backup issuance


@dataclass(frozen=True)
class BackupCert:
    """A certificate from a CA other than the current one's, with its own key, ready to
    be swapped in; renewed on its own schedule."""

    site_id: str
    ca: str
    serial: str
    not_before: int
    not_after: int
    fullchain_pem: str
    key_pem: str
    issued: int
    renew_at: int

    def as_version(self, version: int) -> CertVersion:
        """This certificate as the site's version `version` (when it is made current);
        its renewal time is the site's to work out anew."""
        return CertVersion(
            self.site_id, version, self.serial, self.not_before, self.not_after,
            self.fullchain_pem, self.key_pem, self.issued, self.ca,
        )  # fmt: skip


@dataclass(frozen=True)
class CaHealth:
    ca: str
    failures: int  # consecutive failures that were the CA's (not the site's)
    down_until: int | None
    last_error: str | None


def name_key(name: str) -> str:
    """What makes two names the same name: case does not matter (ASCII case: a name
    with the Kelvin sign, U+212A, which lower-cases to "k", is no stored name's)."""
    return ascii_lower(name)


@dataclass(frozen=True)
class NameConflict:
    """A line of a bulk add that was skipped: its name `name` belongs to `site_id`
    (a site not removed, or one added from an earlier line of the same batch)."""

    line: int  # the line's index in the batch given to `add_sites`, from 0
    name: str
    site_id: str


@dataclass(frozen=True)
class Added:
    """What `SiteRepository.add_sites` did with a batch: the ids of the sites it added, in
    the order of their lines, and the lines it skipped. Iterating it (and `len`) gives
    the ids."""

    ids: list[str]
    conflicts: list[NameConflict] = field(default_factory=list)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class CaSlot:
    """One of a CA's `concurrency` slots, held by `holder` (one order of one worker)."""

    ca: str
    number: int
    holder: str


@dataclass(frozen=True)
class CaStatsBucket:
    """A CA's order attempts, by every fleet process, in the hour starting at `hour`."""

    ca: str
    hour: int
    issued: int
    failed: int
    issued_seconds: float  # summed over issued orders
    failed_seconds: float  # summed over failed ones
    max_seconds: float  # the slowest issued order

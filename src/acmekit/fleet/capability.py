"""What this fleet can validate, so that a site it could never issue is refused when it
is added rather than failing at every CA for hours.

A wildcard name can only be validated by dns-01 (RFC 8555 §7.1.3), and dns-01 needs a
DNS API (`--dns-api`) the fleet publishes TXT records through. Whether the running fleet
has one is recorded in the inventory's settings by `fleet serve` / `fleet worker` at
start (`DNS01_SETTING`), so that `fleet add`, a separate process, can check it too.
A site refused for this is the fleet's configuration fault, never a CA's: the worker
raises `FleetCannotValidate` before it opens an order, and such failures (and any other
of the fleet's side, `is_own_fault`: its DNS API unreachable, an answer it could not
present) do not count in a CA's figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from acmekit.client.solvers.errors import SolverError
from acmekit.fleet.delegation import DnsApiError
from acmekit.fleet.model import ChallengeMethod

DNS01_SETTING = "dns01_api"  # "yes" or "no", as the last fleet process to start saw it

DNS01_HINT = (
    "this fleet has no DNS API for dns-01: start `acmekit fleet serve` (and every "
    "`fleet worker`) with --dns-api URL --dns-resolver HOST:PORT, and --delegation-zone "
    "ZONE for customers' CNAMEs (docs/fleet.md)"
)


class FleetCannotValidate(Exception):
    """The fleet lacks what the site's validation needs: its own fault, not the CA's."""


def is_own_fault(exc: BaseException) -> bool:
    """A failure of the fleet's side (its configuration, its DNS API, presenting an
    answer), which says nothing of the CA and is not counted in its figures."""
    return isinstance(exc, FleetCannotValidate | DnsApiError | SolverError)


def needs_dns01(names: Sequence[str], method: ChallengeMethod) -> bool:
    """Whether the site needs the DNS API: dns-01 and dns-account-01 publish through it,
    and a wildcard needs one of them, unless its owner publishes a dns-persist-01 record."""
    if method == ChallengeMethod.DNS_PERSIST_01:
        return False
    if method in (ChallengeMethod.DNS_01, ChallengeMethod.DNS_ACCOUNT_01):
        return True
    return any(n.startswith("*.") for n in names)


def refusal(names: Sequence[str], method: ChallengeMethod, dns01: bool) -> str | None:
    """Why a site with `names` and `method` cannot be added (None: it can)."""
    if dns01 or not needs_dns01(names, method):
        return None
    wildcard = [n for n in names if n.startswith("*.")]
    asked = "dns-account-01" if method == ChallengeMethod.DNS_ACCOUNT_01 else "dns-01"
    why = f"wildcard {wildcard[0]} needs dns-01" if wildcard else f"{asked} was asked for"
    return f"{why}, and {DNS01_HINT}"

"""Just-in-time validation of standing dns-persist-01 records (draft-ietf-acme-dns-persist-02
§4.4).

When new-order hands out an authorization whose profile offers dns-persist-01, the CA
MAY look for the record at once and, if it stands, answer with the authorization
already valid. It is an optimization only: the authorization passes through the same
checks as when the client answers the challenge (the record, CAA, MPIC corroboration;
authority.py), under a short bound (`persist_jit_timeout`), and on any failure or
timeout it simply stays pending with its challenges, no failure recorded or counted.

The draft's SHOULDs are kept: just-in-time lookups are limited per identifier whoever
asks (`JIT_INTERVAL`), and per registered domain (`JIT_PER_DOMAIN` in each interval),
so that many accounts, or one order naming many subdomains, cannot turn new-order into
a query flood against one domain; one new-order looks up at most `JIT_PER_ORDER`
authorizations (it is one request: the challenge path costs a request a lookup, and
counts failures); they are made only for accounts that have met a dns-persist-01
challenge before (the challenge round-trip is the window in which an account's
compromise could be noticed, and a first validation keeps it), and each is logged. An
account found never to have met one is asked of the store again only after
`JIT_INTERVAL`, not at each of its new-orders.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from acmekit.domains import registered_domain
from acmekit.protocol.messages import AuthorizationStatus, ChallengeStatus, ChallengeType
from acmekit.server.records import AuthorizationRecord, ChallengeRecord

# Seconds between two just-in-time lookups for one identifier (§4.4: rate-limited per
# domain identifier, independent of the requesting account).
JIT_INTERVAL = 10.0
# Lookups per registered domain in each JIT_INTERVAL, whatever the identifiers and
# accounts: without it, distinct subdomains (one order may name 100) each had their own.
JIT_PER_DOMAIN = 10
# Lookups one new-order may cause; the others stay pending for the client to answer.
JIT_PER_ORDER = 10
# Identifiers and accounts remembered at most; past it the memory starts over (a lookup
# more, never a wrong answer).
_REMEMBERED = 10_000


@dataclass(frozen=True)
class Candidate:
    authz: AuthorizationRecord
    challenge: ChallengeRecord


def _untouched(authz: AuthorizationRecord) -> ChallengeRecord | None:
    """The authorization's dns-persist-01 challenge if none of its challenges started."""
    if any(c.status != ChallengeStatus.PENDING for c in authz.challenges):
        return None
    return next((c for c in authz.challenges if c.type == ChallengeType.DNS_PERSIST_01), None)


class StandingCheck:
    """Which authorizations of a new order get a just-in-time lookup, and its bound."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._last: dict[tuple[str, bool], float] = {}
        # registered domain -> (start of its current interval, lookups in it)
        self._domains: dict[str, tuple[float, int]] = {}
        self._known: set[str] = set()
        # account -> when the store last said it never passed dns-persist-01: asked again
        # only after JIT_INTERVAL, not at every new-order (a first pass shows then).
        self._unknown: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self.timeout > 0

    def pick(
        self,
        account_id: str,
        authzs: Sequence[tuple[AuthorizationRecord, AuthorizationStatus]],
        validated_before: Callable[[], bool],
    ) -> list[Candidate]:
        """The pending, untouched authorizations offering dns-persist-01 that may be
        looked up now (each lookup is counted against its identifier)."""
        if not self.enabled:
            return []
        found = []
        for authz, status in authzs:
            ch = _untouched(authz) if status == AuthorizationStatus.PENDING else None
            if ch is not None:
                found.append(Candidate(authz, ch))
        if not found or not self._known_account(account_id, validated_before):
            return []
        picked: list[Candidate] = []
        for c in found:
            if len(picked) >= JIT_PER_ORDER:
                break
            if self._take(c.authz):
                picked.append(c)
        return picked

    def passed(self, account_id: str) -> None:
        """`account_id` has just passed a dns-persist-01 challenge at this process."""
        self._unknown.pop(account_id, None)
        if len(self._known) >= _REMEMBERED:
            self._known.clear()
        self._known.add(account_id)

    def _known_account(self, account_id: str, validated_before: Callable[[], bool]) -> bool:
        if account_id in self._known:
            return True
        now = self._clock()
        asked = self._unknown.get(account_id)
        if asked is not None and now - asked < JIT_INTERVAL:
            return False
        if not validated_before():
            if len(self._unknown) >= _REMEMBERED:
                self._unknown = {a: t for a, t in self._unknown.items() if now - t < JIT_INTERVAL}
            self._unknown[account_id] = now
            return False
        self.passed(account_id)
        return True

    def _take(self, authz: AuthorizationRecord) -> bool:
        key = (authz.identifier.value.lower(), authz.wildcard)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < JIT_INTERVAL:
            return False
        domain = registered_domain(key[0])
        start, count = self._domains.get(domain, (now, 0))
        if now - start >= JIT_INTERVAL:
            start, count = now, 0
        if count >= JIT_PER_DOMAIN:
            return False
        if len(self._last) >= _REMEMBERED:
            self._last = {k: t for k, t in self._last.items() if now - t < JIT_INTERVAL}
        if len(self._domains) >= _REMEMBERED:
            self._domains = {d: w for d, w in self._domains.items() if now - w[0] < JIT_INTERVAL}
        self._last[key] = now
        self._domains[domain] = (start, count + 1)
        return True


__all__ = ["JIT_INTERVAL", "JIT_PER_DOMAIN", "JIT_PER_ORDER", "Candidate", "StandingCheck"]

"""Replay nonces (RFC 8555 §6.5): each accepted once.

A nonce is self-authenticating: 8 bytes of issue time, 4 bytes naming the issuing
process, 4 random bytes and a 16-byte MAC (keyed BLAKE2b) under a secret kept in the
database, so issuing one costs no write. Nonces older than `max_age` are refused without
a lookup, so what remembers the used ones can forget them after that. Where the used
ones are remembered is the scope:

- `database`: in `used_nonces`, whose primary key lets exactly one request win, so a
  nonce from any process of the CA is good at any other (several processes on one
  PostgreSQL database). One insert per POST.
- `process`: in this process's memory, as Boulder and Pebble keep theirs. A nonce is
  good only at the process that issued it; another process refuses it with badNonce,
  and the fresh nonce in that answer is good where the client is now talking (§6.5
  lets a server refuse a nonce for any reason, and clients retry). No write per POST.
  Nonces do not survive a restart.

Clocks: in database scope the process that prunes the used nonces may not be the one
that accepts them. Were the pruner's clock ahead of the acceptor's by D, a nonce used in
the last D before its expiry would be forgotten while still accepted: replayable. So
used nonces are kept `CLOCK_SKEW` longer than they are accepted, and a nonce stamped
more than `CLOCK_SKEW` ahead of this process's clock (issued by a process whose clock
runs fast) is refused. Processes whose clocks agree within `CLOCK_SKEW` cannot replay.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from acmekit.protocol.jose import b64d, b64e
from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.config import NonceScope
from acmekit.server.records import AccountRecord
from acmekit.server.repos.base import Ahead
from acmekit.server.store import Store

# The most two CA processes' clocks may disagree by without a nonce being redeemable
# twice (see above); NTP keeps them within a second.
CLOCK_SKEW = timedelta(minutes=10)
RANDOM_POOL = 4096  # bytes of randomness read at once for the nonces' random part
MAC_SIZE = 16  # bytes of MAC at the end of a nonce, after 16 bytes of body
_SKEW_US = CLOCK_SKEW.total_seconds() * 1e6
# A nonce's first 8 bytes: its issue time in µs, big-endian. Compiled once: `struct.pack`
# and `struct.unpack` look the format up in the module's cache on every call.
_STAMP = struct.Struct(">Q")


def _bad_nonce(detail: str) -> AcmeError:
    return problem(ProblemType.BAD_NONCE, detail)


class _UsedInMemory:
    """The nonces this process has accepted, forgotten once they are too old to matter."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()
        self._order: deque[tuple[int, bytes]] = deque()

    def add(self, raw: bytes, issued_us: int) -> bool:
        """Record `raw` as used; False if it already was."""
        if raw in self._seen:
            return False
        self._seen.add(raw)
        self._order.append((issued_us, raw))
        return True

    def forget_before(self, issued_us: int) -> int:
        """Drop what was issued before `issued_us` (kept in redemption order, which is
        close to issue order: a straggler stays a little longer, never less)."""
        dropped = 0
        while self._order and self._order[0][0] < issued_us:
            self._seen.discard(self._order.popleft()[1])
            dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._seen)


class NonceService:
    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime],
        max_age: timedelta = timedelta(hours=1),
        random_bytes: Callable[[int], bytes] = os.urandom,
        scope: NonceScope = NonceScope.DATABASE,
    ) -> None:
        self._store = store
        self._now = now
        self._max_age = max_age
        self._max_age_us = max_age.total_seconds() * 1e6  # compared with every nonce
        self._random = random_bytes
        key = bytes.fromhex(store.accounts.setting("nonce_key", secrets.token_hex(32)))
        # Keyed once here; each MAC copies this state. BLAKE2b's keyed mode is a MAC by
        # design, and Python's own implementation is a quarter of the instructions of
        # OpenSSL's one-shot HMAC, which fetches the digest through its provider (and
        # takes its locks) on every call.
        self._keyed = hashlib.blake2b(key=key, digest_size=MAC_SIZE)
        self.scope = scope
        self._process = random_bytes(4)
        self._used = _UsedInMemory()
        self._pool, self._taken = b"", 0  # random bytes drawn ahead, and how many used

    def _random4(self) -> bytes:
        """Four fresh random bytes: drawn from the system RNG RANDOM_POOL bytes at a time,
        not with one system call per response; each byte is used once."""
        start = self._taken
        if start + 4 > len(self._pool):
            self._pool, start = self._random(RANDOM_POOL), 0
        self._taken = start + 4
        return self._pool[start : start + 4]

    def _mac(self, body: bytes) -> bytes:
        # Twice a request: issue and redeem.
        keyed = self._keyed.copy()
        keyed.update(body)
        return keyed.digest()

    def issue(self) -> str:
        stamp = _STAMP.pack(int(self._now().timestamp() * 1_000_000))
        body = stamp + self._process + self._random4()
        return b64e(body + self._mac(body))

    def redeem(
        self,
        nonce: object,
        account_id: str | None = None,
        ahead: Sequence[Ahead[Any]] | Callable[[], Sequence[Ahead[Any]]] = (),
    ) -> AccountRecord | None:
        """Accept `nonce` once, or raise badNonce (§6.5); with `account_id`, also read that
        account (in the nonce's transaction, in database scope) and return it (None if
        there is none), the handler's reads `ahead` in the same round trip: or what
        makes them, called once the nonce is known to be this CA's and fresh (a request
        refused for its nonce costs no more than before)."""
        raw, issued_us = self._check(nonce)
        if self.scope == NonceScope.DATABASE:
            if callable(ahead):
                ahead = ahead()
            issued = datetime.fromtimestamp(issued_us / 1_000_000, tz=UTC)
            # Recorded by its bytes' one canonical encoding, so no other spelling of the
            # same nonce can be redeemed a second time.
            redeemed, account = self._store.accounts.redeem_nonce_for(
                b64e(raw), issued, account_id, ahead
            )
            if not redeemed:
                raise _bad_nonce("nonce has already been used")
            return account
        if raw[8:12] != self._process:
            raise _bad_nonce("nonce was issued by another server process; use the new one")
        if not self._used.add(raw, issued_us):
            raise _bad_nonce("nonce has already been used")
        if account_id is None:
            return None
        return self._store.accounts.account(account_id, ahead() if callable(ahead) else ahead)

    def _check(self, nonce: object) -> tuple[bytes, int]:
        """The nonce's bytes and issue time (µs), if this CA made it and it is fresh."""
        if not isinstance(nonce, str) or not nonce:
            raise _bad_nonce("JWS has no nonce")
        try:
            raw = b64d(nonce)
        except AcmeError:
            raise _bad_nonce("nonce is not base64url") from None
        if len(raw) != 32 or not hmac.compare_digest(self._mac(raw[:16]), raw[16:]):
            raise _bad_nonce("nonce was not issued by this server")
        (issued_us,) = _STAMP.unpack_from(raw)
        age_us = self._now().timestamp() * 1_000_000 - issued_us
        if age_us > self._max_age_us:
            raise _bad_nonce("nonce has expired")
        if -age_us > _SKEW_US:
            raise _bad_nonce("nonce is stamped in the future; the CA's clocks disagree")
        return raw, issued_us

    def prune(self) -> int:
        """Forget used nonces that are too old to be accepted anyway."""
        cutoff = self._now() - self._max_age
        if self.scope == NonceScope.DATABASE:
            # kept longer than accepted: another process's clock may be behind this one's
            return self._store.accounts.prune_nonces(cutoff - CLOCK_SKEW)
        return self._used.forget_before(int(cutoff.timestamp() * 1_000_000))

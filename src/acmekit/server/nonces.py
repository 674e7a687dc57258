"""Replay nonces (RFC 8555 §6.5) that are single use across every process of one CA.

A nonce is self-authenticating: 8 bytes of issue time, 8 random bytes and a truncated
HMAC under a secret kept in the database, so issuing one costs no write. Redeeming one
inserts it into `used_nonces`, whose primary key lets exactly one request win; nonces
older than `max_age` are refused without a lookup, so that table can be pruned.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from acmekit.protocol.jose import b64d, b64e
from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.records import AccountRecord
from acmekit.server.store import Store


def _bad_nonce(detail: str) -> AcmeError:
    return problem(ProblemType.BAD_NONCE, detail)


class NonceService:
    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime],
        max_age: timedelta = timedelta(hours=1),
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._store = store
        self._now = now
        self._max_age = max_age
        self._random = random_bytes
        self._key = bytes.fromhex(store.setting("nonce_key", secrets.token_hex(32)))

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:16]

    def issue(self) -> str:
        stamp = struct.pack(">Q", int(self._now().timestamp() * 1_000_000))
        body = stamp + self._random(8)
        return b64e(body + self._mac(body))

    def redeem(self, nonce: object, account_id: str | None = None) -> AccountRecord | None:
        """Accept `nonce` once, or raise badNonce (§6.5); with `account_id`, also read that
        account in the same transaction and return it (None if there is none)."""
        if not isinstance(nonce, str) or not nonce:
            raise _bad_nonce("JWS has no nonce")
        try:
            raw = b64d(nonce)
        except AcmeError:
            raise _bad_nonce("nonce is not base64url") from None
        if len(raw) != 32 or not hmac.compare_digest(self._mac(raw[:16]), raw[16:]):
            raise _bad_nonce("nonce was not issued by this server")
        (stamp,) = struct.unpack(">Q", raw[:8])
        issued = datetime.fromtimestamp(stamp / 1_000_000, tz=UTC)
        if self._now() - issued > self._max_age:
            raise _bad_nonce("nonce has expired")
        redeemed, account = self._store.redeem_nonce_for(nonce, issued, account_id)
        if not redeemed:
            raise _bad_nonce("nonce has already been used")
        return account

    def prune(self) -> int:
        return self._store.prune_nonces(self._now() - self._max_age)

"""The one authentication step every POST shares (RFC 8555 §6.2-§6.5).

A handler gets an `Authenticated` (the verified JWS, its payload and, for `kid`
requests, the account) or the request ends in a problem document. Order of checks
follows §6.2: well-formed JWS, allowed algorithm, exactly one of jwk/kid, url equals
the request URL, nonce redeemed once, signature valid, account exists and is valid.

The inner JWSs of newAccount (externalAccountBinding, §7.3.4) and keyChange (§7.3.5)
name URLs too; they are checked here against the request, so the rules never see a URL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, Literal

from acmekit.protocol import payloads
from acmekit.protocol.frozen import frozen_for_mypy
from acmekit.protocol.jose import ALLOWED_ALGS, Jws, PublicKey, key_from_jwk, parse_jws
from acmekit.protocol.messages import AccountStatus
from acmekit.protocol.problems import ProblemType, malformed, problem, unauthorized
from acmekit.server.nonces import NonceService
from acmekit.server.records import AccountRecord
from acmekit.server.repos.base import Ahead
from acmekit.server.store import Store

Signer = Literal["kid", "jwk", "either"]

KEY_CACHE_SIZE = 10_000  # parsed account keys kept, by thumbprint


@frozen_for_mypy  # built every request: docs/decisions.md
class Authenticated:
    jws: Jws
    key: PublicKey
    account: AccountRecord | None  # None when the JWS carried a jwk (newAccount, revoke)

    @cached_property
    def payload(self) -> Any:
        """The decoded payload, parsed once however often handlers read it."""
        return self.jws.payload_json()

    @property
    def is_post_as_get(self) -> bool:
        return self.jws.payload_b64 == ""

    def require_account(self) -> AccountRecord:
        if self.account is None:
            raise malformed("this resource needs a JWS with kid, not jwk")
        return self.account


def account_id_from_kid(kid: str, account_prefix: str) -> str:
    if not kid.startswith(account_prefix):
        raise problem(ProblemType.ACCOUNT_DOES_NOT_EXIST, f"kid {kid!r} is not an account URL")
    return kid.removeprefix(account_prefix)


def external_account_binding(payload: object, url: str) -> Jws | None:
    """§7.3.4: newAccount's externalAccountBinding JWS, whose url must be newAccount's."""
    eab = payload.get("externalAccountBinding") if isinstance(payload, dict) else None
    if eab is None:
        return None
    inner = parse_jws(eab)
    if inner.protected.get("url") != url:
        raise unauthorized("externalAccountBinding url does not match newAccount")
    return inner


@dataclass(frozen=True)
class KeyChange:
    """§7.3.5: keyChange's inner JWS (signed by the new key), its url checked, and the
    id of the account its payload names."""

    inner: Jws
    account_id: str
    old_key: object


def key_change(auth: Authenticated, url: str, account_prefix: str) -> KeyChange:
    inner = parse_jws(auth.payload)
    if inner.protected.get("url") != url:
        raise malformed("inner JWS url must equal the outer url")
    body = payloads.check(
        payloads.KEY_CHANGE_INNER, inner.payload_json(), "keyChange inner payload"
    )
    account_id = account_id_from_kid(body["account"], account_prefix)
    return KeyChange(inner, account_id, body.get("oldKey"))


# What makes a handler's first reads from the request's JWS (not yet verified) and the
# id of the account it names (`Authenticator.authenticate`).
AheadOf = Callable[[Jws, str], Sequence[Ahead[Any]]]


class Authenticator:
    def __init__(
        self,
        store: Store,
        nonces: NonceService,
        check_jwk: Callable[[PublicKey], None] | None = None,
    ) -> None:
        self._store = store
        self._nonces = nonces
        self._keys: dict[str, PublicKey] = {}
        # Run on an embedded jwk before its signature is verified (Policy.check_signing_key).
        self._check_jwk = check_jwk

    def authenticate(
        self,
        body: bytes,
        url: str,
        account_prefix: str,
        *,
        signer: Signer = "kid",
        ahead: Sequence[Ahead[Any]] | AheadOf = (),
    ) -> Authenticated:
        """`signer` says what the resource accepts: an account `kid`, a `jwk`, or either.
        `ahead`: the handler's first reads, sent in the round trip that reads the
        account (a `kid` request's), or what makes them from the JWS (its payload not
        yet verified: reads only) and the account's id; their answers are for the
        handler to take after every check here has passed."""
        jws = parse_jws(body)
        header = jws.protected
        if jws.alg not in ALLOWED_ALGS:
            raise problem(
                ProblemType.BAD_SIGNATURE_ALGORITHM,
                f"alg {jws.alg!r} is not allowed; use one of {sorted(ALLOWED_ALGS)}",
            )
        if ("jwk" in header) == ("kid" in header):
            raise malformed("JWS must carry exactly one of jwk and kid")
        if header.get("url") != url:
            raise unauthorized(f"JWS url {header.get('url')!r} does not match request URL {url}")
        kid = header.get("kid")
        # The account row is read in the nonce's transaction (one round trip, not two);
        # a kid that names no account is refused below, after the nonce, as before.
        wanted = kid.removeprefix(account_prefix) if isinstance(kid, str) else None
        if wanted is not None and "\x00" in wanted:
            # No id of the CA's making has a NUL: nothing to read. PostgreSQL refused
            # the statement (a 500 where §6.2 has accountDoesNotExist).
            wanted = None
        reads: Sequence[Ahead[Any]] | Callable[[], Sequence[Ahead[Any]]] = ()
        if wanted:  # made once the nonce passed its own checks (`NonceService.redeem`)
            reads = partial(ahead, jws, wanted) if callable(ahead) else ahead
        found = self._nonces.redeem(header.get("nonce"), wanted, reads)
        account = None
        given = "jwk" if "jwk" in header else "kid"
        if signer != "either" and given != signer:
            raise malformed(f"this resource needs a JWS with {signer}, not {given}")
        if given == "jwk":
            key = key_from_jwk(header["jwk"])
            if self._check_jwk is not None:
                # Anyone may send a jwk: a key the CA refuses anyway is refused before the
                # verification, whose cost the key's RSA exponent sets (RFC 8555 §6.2).
                self._check_jwk(key)
        else:
            account = self._account(kid, account_prefix, found)
            key = self._account_key(account)
        if not jws.verify(key):
            raise malformed("JWS signature is invalid")
        return Authenticated(jws, key, account)

    def _account_key(self, account: AccountRecord) -> PublicKey:
        """The account's key object, parsed once per key: a thumbprint names one key."""
        key = self._keys.get(account.thumbprint)
        if key is None:
            key = key_from_jwk(account.jwk)
            if len(self._keys) >= KEY_CACHE_SIZE:
                del self._keys[next(iter(self._keys))]
            self._keys[account.thumbprint] = key
        return key

    def _account(
        self, kid: object, account_prefix: str, found: AccountRecord | None
    ) -> AccountRecord:
        if not isinstance(kid, str):
            raise malformed("kid must be a string")
        account_id = account_id_from_kid(kid, account_prefix)
        account = found if found is not None and found.id == account_id else None
        if account is None:
            raise problem(ProblemType.ACCOUNT_DOES_NOT_EXIST, f"no account at {kid}")
        if account.status != AccountStatus.VALID:
            raise unauthorized(f"account is {account.status}")
        return account

"""Key, name and CAA policy, assembled from the server's settings for the rules to call.

- Keys (CSR keys and account keys) go through `keycheck.check_key` with a blocklist
  that is the configured hashes plus every key of a certificate revoked for
  keyCompromise (RFC 5280 reason 1), kept in the database so every process sees it.
- CAA (RFC 8659, RFC 8657) is checked right after a dns identifier validates, and again
  at finalize for authorizations validated longer ago than `caa.recheck_after`, as the
  CA/Browser Forum baseline requirements ask (8 hours by default).
- Names: `names.NamePolicy` refuses public suffixes, special-use names (but those in
  `validation.allowed_special_names`), invalid A-labels and reserved IP addresses (but
  those in `validation.allow_networks`) when an order is created.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from acmekit.protocol.csr import csr_public_key
from acmekit.protocol.jose import Jws, PublicKey, b64d
from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.server.caa import CaaChecker
from acmekit.server.config import ServerConfig, split_host_port
from acmekit.server.keycheck import (
    KeyPolicy,
    KeyPurpose,
    check_key,
    check_rsa_cost,
    spki_sha256,
)
from acmekit.server.names import NamePolicy
from acmekit.server.repos.base import Ahead
from acmekit.server.store import Store
from acmekit.server.validation.dnssec import DnssecMode
from acmekit.server.validation.reserved import AddressPolicy

KEY_COMPROMISE = 1


class StoredBlocklist:
    """The configured blocked keys plus the database's (KeyBlocklist protocol)."""

    def __init__(self, store: Store, configured: tuple[str, ...]) -> None:
        self._store = store
        self.configured = frozenset(h.lower() for h in configured)

    def contains(self, spki_hash: str) -> bool:
        return self.reason(spki_hash) is not None

    def reason(self, spki_hash: str, stored: Callable[[], bool] | None = None) -> str | None:
        """`stored`: the database's answer for this key, if read already (`BlockedAhead`)."""
        # Say which list holds it: an operator who blocked a key in the TOML file must not
        # be told a certificate of it was revoked for keyCompromise, nor the reverse.
        if spki_hash.lower() in self.configured:
            return "the CA's configuration blocks it ([keys] blocked)"
        if stored() if stored is not None else self._store.certificates.key_blocked(spki_hash):
            return "it belongs to a certificate revoked for keyCompromise"
        return None


class BlockedAhead:
    """Whether the database blocks the key of a finalize's CSR, read ahead (`Ahead`)
    with the request's account: the key's hash, and the read."""

    __slots__ = ("read", "spki_hash")

    def __init__(self, spki_hash: str, read: Ahead[bool]) -> None:
        self.spki_hash = spki_hash
        self.read = read


class _KnownBlocklist:
    """The stored blocklist, with the database's answer for one key already read."""

    __slots__ = ("_ahead", "_list")

    def __init__(self, blocklist: StoredBlocklist, ahead: BlockedAhead) -> None:
        self._list = blocklist
        self._ahead = ahead

    def contains(self, spki_hash: str) -> bool:
        return self.reason(spki_hash) is not None

    def reason(self, spki_hash: str) -> str | None:
        ahead = self._ahead
        if spki_hash.lower() != ahead.spki_hash:
            return self._list.reason(spki_hash)
        return self._list.reason(spki_hash, ahead.read.result)


class Policy:
    def __init__(self, config: ServerConfig, store: Store) -> None:
        keys = config.keys
        self._keys = KeyPolicy(
            rsa_min_bits=keys.rsa_min_bits,
            rsa_max_bits=keys.rsa_max_bits,
            allow_ed25519_accounts=keys.allow_ed25519_accounts,
        )
        self._store = store
        self._blocklist = StoredBlocklist(store, keys.blocked)
        self.caa_recheck_after = config.caa.recheck_after
        reachable = AddressPolicy.allowing(config.validation.allow_networks)
        self._names = NamePolicy(config.validation.allowed_special_names, reachable)
        self._caa: CaaChecker | None = None
        if config.caa.enabled:
            resolver = split_host_port(config.dns_resolver) if config.dns_resolver else None
            self._caa = CaaChecker(
                resolver,
                config.caa_identities,
                config.caa.timeout,
                dnssec=DnssecMode(config.validation.dnssec),
                per_account=config.caa.lookups_per_account,
            )

    def check_signing_key(self, key: PublicKey) -> None:
        """What every key the CA accepts meets, checked before a JWS's signature by an
        embedded `jwk` is verified (an account key, or a certificate's key revoking it):
        an RSA exponent or size the policy refuses would make the verification itself
        costly (keycheck.check_rsa_cost); the rest of the key's checks follow, for its
        purpose."""
        check_rsa_cost(key, self._keys)

    def check_account_key(self, key: PublicKey) -> None:
        check_key(key, self._keys, self._blocklist, purpose=KeyPurpose.ACCOUNT)

    def check_certificate_key(self, key: CertificatePublicKeyTypes) -> None:
        check_key(key, self._keys, self._blocklist, purpose=KeyPurpose.CERTIFICATE)

    def blocked_ahead(self, jws: Jws) -> BlockedAhead | None:
        """The blocklist's read for the key of the CSR a finalize's JWS carries, to send
        with the request's account read (one round trip on PostgreSQL, not two). The JWS
        is not verified yet: the read only reads, and its answer is used only by the
        CSR's check (`certificate_key_check`) after authentication, for the CSR the
        verified payload holds (the same bytes). None where there is nothing to read
        ahead: a payload without a CSR that parses (the handler's checks refuse it as
        before), or a key the configuration blocks."""
        try:
            csr = x509.load_der_x509_csr(b64d(jws.payload_json()["csr"]))
            spki_hash = spki_sha256(csr_public_key(csr))  # the key kept for check_csr
        except Exception:  # whatever it is, the handler's own checks say it
            return None
        if spki_hash in self._blocklist.configured:
            return None
        return BlockedAhead(spki_hash, self._store.certificates.key_blocked_ahead(spki_hash))

    def certificate_key_check(
        self, ahead: BlockedAhead | None
    ) -> Callable[[CertificatePublicKeyTypes], None]:
        """`check_certificate_key`, with the blocklist's answer read ahead if any."""
        if ahead is None:
            return self.check_certificate_key
        blocklist = _KnownBlocklist(self._blocklist, ahead)
        return lambda key: check_key(key, self._keys, blocklist, purpose=KeyPurpose.CERTIFICATE)

    def check_identifiers(self, identifiers: Sequence[Identifier]) -> None:
        """rejectedIdentifier for a name or address the CA does not issue for."""
        self._names.check(identifiers)

    def key_to_block(self, key: PublicKey, reason: int, serial: str) -> tuple[str, str] | None:
        """What a revocation for `reason` blocks with it (`CertificateRepository.revoke`):
        a compromised key may never be used again."""
        return (spki_sha256(key), serial) if reason == KEY_COMPROMISE else None

    def check_caa(
        self, identifier: Identifier, wildcard: bool, account_uri: str, method: ChallengeType
    ) -> Awaitable[None]:
        """Awaited, raises a `caa` problem unless CAA permits this CA to issue for
        `identifier`. (The checker's coroutine itself, not one of this method's around
        it: every coroutine between a task and its wait is passed through at each wake.)"""
        if self._caa is None or identifier.type != IdentifierType.DNS:
            return _nothing()
        return self._caa.check(
            identifier.value, wildcard=wildcard, account_uri=account_uri, method=str(method)
        )


async def _nothing() -> None:
    """`check_caa` when there is nothing to check."""

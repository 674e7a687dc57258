"""The intermediate's key in a PKCS#11 token (an HSM; SoftHSM2 in tests), through
python-pkcs11.

- `Pkcs11Key` signs with a private key found by its token label and key label. Python
  never holds the key: only a handle to it, and the public key, which comes from the
  intermediate certificate. At connection, one test signature is checked against that
  certificate, so a wrong key label or token stops the server at start.
- A handle that fails (the token removed, its session or objects invalid) is dropped and
  the key looked up again at once: the module is finalized and initialized again (so that
  it sees its slots afresh), the session opened, the key found. If the token is not
  there, `sign`/`check` raise `SignerUnavailable`, and later calls look again at most
  once per `retry_interval`. Nothing else is needed when it is back.
- A PIN the token refuses, a module that does not load, a token or key that is not there
  at start raise `HsmError` with what to check.
- `generate_key` makes the key pair in the token: the private key sensitive and never
  extractable (CKA_SENSITIVE, CKA_EXTRACTABLE false: PKCS#11 v2.40 §4.9), so the token
  will not hand it out, wrapped or in the clear.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from acmekit.server.signing import (
    ExternalPublicKey,
    SignerUnavailable,
    ecdsa_signature_der,
    read_tlv,
    verify_signature,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Named curves by OID (RFC 5480 §2.1.1.1), as CKA_EC_PARAMS holds them in DER.
_CURVES: dict[str, tuple[bytes, ec.EllipticCurve]] = {
    "ec256": (bytes.fromhex("06082a8648ce3d030107"), ec.SECP256R1()),
    "ec384": (bytes.fromhex("06052b81040022"), ec.SECP384R1()),
}
_RSA_BITS = {"rsa2048": 2048, "rsa3072": 3072, "rsa4096": 4096}
KEY_TYPES = (*_CURVES, *_RSA_BITS)


class HsmError(ValueError):
    """The token cannot be used as configured (module, token, key or PIN): say which."""


@dataclass(frozen=True)
class TokenAddress:
    """Where the key is: the PKCS#11 module, the token's label, the key's label."""

    module: str
    token_label: str
    key_label: str


def _lib(module: str) -> Any:
    try:
        return pkcs11.lib(module)
    except RuntimeError as exc:  # PKCS11Error is a RuntimeError, as the loader's errors are
        raise HsmError(f"PKCS#11 module {module} does not load: {exc}") from None


def _token(lib: Any, where: TokenAddress) -> Any:
    try:
        return lib.get_token(token_label=where.token_label)
    except pkcs11.NoSuchToken:
        raise HsmError(
            f"no token labelled {where.token_label!r} in PKCS#11 module {where.module}"
        ) from None
    except pkcs11.MultipleTokensReturned:
        raise HsmError(f"more than one token labelled {where.token_label!r}") from None


def _login(token: Any, where: TokenAddress, pin: str, *, rw: bool = False) -> Any:
    try:
        return token.open(rw=rw, user_pin=pin)
    except (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange):
        raise HsmError(f"token {where.token_label!r} refused the PIN") from None
    except pkcs11.PinLocked:
        raise HsmError(f"token {where.token_label!r}: the PIN is locked") from None


class Pkcs11Key:
    """An ExternalKey in a PKCS#11 token (acmekit.server.signing)."""

    def __init__(
        self,
        where: TokenAddress,
        pin: str,
        public: ExternalPublicKey,
        *,
        retry_interval: float = 1.0,
    ) -> None:
        self.where = where
        self._pin = pin
        self._public = public
        self.retry_interval = retry_interval
        self._lock = threading.Lock()
        self._session: Any = None
        self._key: Any = None
        self._last_attempt = float("-inf")
        self._connected_once = False

    # ExternalKey ----------------------------------------------------------------------

    def public_key(self) -> ExternalPublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._with_key(lambda key: self._sign_with(key, data))

    def check(self) -> None:
        # A round trip to the token: is the object still there?
        self._with_key(lambda key: key[Attribute.SIGN])

    def _with_key(self, operation: Callable[[Any], T]) -> T:
        """`operation` on the key's handle. A handle that fails (the token was removed,
        perhaps put back since) is dropped and the key looked up again at once, then
        tried once more: a token that is back is used without a client seeing a 503."""
        with self._lock:
            for attempt in (1, 2):
                key = self._usable_key(now=attempt == 2)
                try:
                    return operation(key)
                except pkcs11.PKCS11Error as exc:
                    self._lost(exc)
                    if attempt == 2:
                        raise SignerUnavailable(self._away(exc)) from None
            raise AssertionError("unreachable")

    # connection -----------------------------------------------------------------------

    def connect(self) -> None:
        """Open a session and find the key now; HsmError if that cannot be done."""
        with self._lock:
            self._connect()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _connect(self) -> None:
        self._last_attempt = time.monotonic()
        lib = _lib(self.where.module)
        if self._connected_once:
            # A module caches its slot list; only a new initialization sees a token that
            # was removed and put back (PKCS#11 v2.40 §5.4: C_Finalize, C_Initialize).
            lib.reinitialize()
        session = _login(_token(lib, self.where), self.where, self._pin)
        try:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=self.where.key_label)
        except pkcs11.NoSuchKey:
            session.close()
            raise HsmError(
                f"no private key labelled {self.where.key_label!r} "
                f"in token {self.where.token_label!r}"
            ) from None
        probe = b"acmekit: does this key belong to the intermediate certificate?"
        signature = self._sign_with(key, probe)
        try:
            verify_signature(self._public, signature, probe)
        except Exception:
            session.close()
            raise HsmError(
                f"key {self.where.key_label!r} in token {self.where.token_label!r} is not "
                "the key of the intermediate certificate"
            ) from None
        self._session, self._key = session, key
        self._connected_once = True
        log.info("signing key %r in token %r ready", self.where.key_label, self.where.token_label)

    def _usable_key(self, *, now: bool = False) -> Any:
        """The key's handle, connecting again if it was lost; unless `now`, at most once
        per `retry_interval` (a token that is away is not asked for on every request)."""
        if self._key is not None:
            return self._key
        wait = self._last_attempt + self.retry_interval - time.monotonic()
        if wait > 0 and not now:
            raise SignerUnavailable(f"token {self.where.token_label!r} is not available")
        try:
            self._connect()
        except (HsmError, pkcs11.PKCS11Error) as exc:
            log.warning("token %r still unavailable: %s", self.where.token_label, exc)
            raise SignerUnavailable(
                f"token {self.where.token_label!r} is not available: {exc or type(exc).__name__}"
            ) from None
        log.warning("token %r is back", self.where.token_label)
        return self._key

    def _lost(self, exc: Exception) -> None:
        log.error("lost token %r: %s", self.where.token_label, self._away(exc))
        self._drop()

    def _drop(self) -> None:
        session, self._session, self._key = self._session, None, None
        if session is not None:
            with contextlib.suppress(pkcs11.PKCS11Error):  # it may have gone with the token
                session.close()

    def _away(self, exc: Exception) -> str:
        return f"token {self.where.token_label!r} is not available ({type(exc).__name__})"

    def _sign_with(self, key: Any, data: bytes) -> bytes:
        if isinstance(self._public, rsa.RSAPublicKey):
            signature: bytes = key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
            return signature
        # CKM_ECDSA signs a digest the caller makes (PKCS#11 v2.40 §2.3.6), which every
        # token has, where the hash-and-sign mechanisms are optional.
        name = "sha384" if self._public.curve.name == "secp384r1" else "sha256"
        digest = hashlib.new(name, data).digest()
        return ecdsa_signature_der(key.sign(digest, mechanism=Mechanism.ECDSA))


def read_pin(pin_file: str | None, pin_env: str | None, environ: Mapping[str, str]) -> str:
    """The PIN from a file (its first line) or an environment variable: never from the
    command line, where any user of the machine can read it (`ps`, /proc)."""
    if pin_file is not None:
        try:
            text = Path(pin_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise HsmError(f"PIN file {pin_file}: {exc.strerror or exc}") from None
        pin = text.splitlines()[0] if text else ""
        where = f"PIN file {pin_file}"
        if Path(pin_file).stat().st_mode & 0o077:
            log.warning("PIN file %s can be read by others than its owner (chmod 600)", pin_file)
    elif pin_env is not None:
        pin = environ.get(pin_env, "")
        where = f"environment variable {pin_env}"
    else:
        raise HsmError("no PIN: give a PIN file or an environment variable")
    if not pin:
        raise HsmError(f"{where} holds no PIN")
    return pin


# ---------------------------------------------------------------------------------------
# Making the key


def _public_from_token(pub: Any, key_type: str) -> ExternalPublicKey:
    if key_type in _RSA_BITS:
        n = int.from_bytes(pub[Attribute.MODULUS], "big")
        e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    curve = _CURVES[key_type][1]
    point: bytes = pub[Attribute.EC_POINT]
    # CKA_EC_POINT is the DER OCTET STRING around the uncompressed point (PKCS#11 v2.40
    # §2.3.3); some tokens give the bare point, which has exactly its own length.
    if len(point) != 1 + 2 * ((curve.key_size + 7) // 8):
        tag, start, end = read_tlv(point)
        if tag != 0x04 or end != len(point):
            raise HsmError("the token's CKA_EC_POINT is not an OCTET STRING")
        point = point[start:end]
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)


def generate_key(where: TokenAddress, pin: str, key_type: str) -> ExternalPublicKey:
    """Make a key pair labelled `where.key_label` in the token; its public key.
    HsmError if the label is taken (a CA key is never replaced by accident)."""
    if key_type not in KEY_TYPES:
        raise HsmError(f"key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")
    lib = _lib(where.module)
    session = _login(_token(lib, where), where, pin, rw=True)
    try:
        taken = list(session.get_objects({Attribute.LABEL: where.key_label}))
        if taken:
            raise HsmError(
                f"token {where.token_label!r} already holds objects labelled "
                f"{where.key_label!r}; choose another --key-label"
            )
        ident = os.urandom(8)
        private: Mapping[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }
        public: Mapping[Attribute, Any] = {Attribute.TOKEN: True, Attribute.VERIFY: True}
        common: dict[str, Any] = {
            "store": True,
            "label": where.key_label,
            "id": ident,
            "private_template": private,
            "public_template": public,
        }
        if key_type in _RSA_BITS:
            pub, _ = session.generate_keypair(KeyType.RSA, _RSA_BITS[key_type], **common)
        else:
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: _CURVES[key_type][0]}, local=True
            )
            pub, _ = params.generate_keypair(**common)
        return _public_from_token(pub, key_type)
    finally:
        session.close()


def key_attributes(where: TokenAddress, pin: str) -> dict[str, bool]:
    """The private key's protection flags as the token reports them (for checks)."""
    lib = _lib(where.module)
    session = _login(_token(lib, where), where, pin)
    try:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=where.key_label)
        return {
            "sensitive": bool(key[Attribute.SENSITIVE]),
            "extractable": bool(key[Attribute.EXTRACTABLE]),
            "always_sensitive": bool(key[Attribute.ALWAYS_SENSITIVE]),
            "never_extractable": bool(key[Attribute.NEVER_EXTRACTABLE]),
        }
    finally:
        session.close()

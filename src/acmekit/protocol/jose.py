"""JWS and JWK as ACME uses them (RFC 8555 §6.2, RFC 7515, RFC 7517, RFC 7638).

ACME needs one narrow slice of JOSE: flattened JSON serialization, four signature
algorithms, JWK thumbprints, and HS256 only inside External Account Binding. That slice
is written here over `cryptography` so that every failure maps to the exact ACME
problem type (see docs/decisions.md for why no JOSE library).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from acmekit.protocol import jsontext
from acmekit.protocol.frozen import frozen_for_mypy
from acmekit.protocol.keykinds import is_ec_public, is_rsa_public
from acmekit.protocol.problems import ProblemType, malformed, problem

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class Alg(StrEnum):
    ES256 = "ES256"
    ES384 = "ES384"
    RS256 = "RS256"
    EDDSA = "EdDSA"


ALLOWED_ALGS = frozenset(a.value for a in Alg)

_CURVES: dict[str, tuple[type[ec.EllipticCurve], int, Alg]] = {
    "P-256": (ec.SECP256R1, 32, Alg.ES256),
    "P-384": (ec.SECP384R1, 48, Alg.ES384),
}


# base64url by binascii directly, as `base64.urlsafe_b64encode` and `urlsafe_b64decode` do
# behind two or three Python calls each: a few of these run with every request.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def b64e(data: bytes) -> str:
    encoded = binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE)
    return encoded.rstrip(b"=").decode("ascii")


_B64URL_VALUE = {
    c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}
_SPARE_BITS = (0, 0, 0b1111, 0b11)  # by the text's length mod 4 (1 is refused before)


def b64d(text: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2, RFC 4648 §5): only the URL-safe
    alphabet, no `=`, no whitespace, and zero spare bits in the last character, so one
    byte string has exactly one encoding. Anything else is malformed."""
    if not isinstance(text, str) or len(text) % 4 == 1:
        raise malformed("invalid base64url")
    # The alphabet is checked by binascii's strict mode, which refuses any character
    # outside base64's (whitespace, `=` but for the padding added here). base64's own
    # `+` and `/`, and a `=` of the text's, are refused first: after the translation they
    # would pass. Three one-character searches cost less than a regular expression's
    # character-class loop over the text (four values a request, up to 400 characters).
    if "+" in text or "/" in text or "=" in text:
        raise malformed("invalid base64url")
    try:
        padded = text.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4)
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise malformed("invalid base64url") from exc
    # Non-zero spare bits decode to the same bytes as the canonical text would. They sit
    # in the last character: its low 4 bits when two characters end the text (one byte),
    # its low 2 when three do (two bytes); testing it costs less than encoding again.
    spare = _SPARE_BITS[len(text) % 4]
    if spare and _B64URL_VALUE[text[-1]] & spare:
        raise malformed("invalid base64url: non-zero spare bits")
    return raw


def _int_b64(n: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (n.bit_length() + 7) // 8)
    return b64e(n.to_bytes(size, "big"))


def _b64_int(text: Any) -> int:
    return int.from_bytes(b64d(text), "big")


def jwk_from_key(key: PublicKey | PrivateKey) -> dict[str, str]:
    """The public JWK of a key, with only the members RFC 7638 hashes."""
    pub = key.public_key() if not isinstance(key, PublicKey) else key
    if isinstance(pub, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(pub.curve.name)
        if crv is None:
            raise ValueError(f"unsupported curve {pub.curve.name}")
        nums = pub.public_numbers()
        size = _CURVES[crv][1]
        return {"crv": crv, "kty": "EC", "x": _int_b64(nums.x, size), "y": _int_b64(nums.y, size)}
    if isinstance(pub, rsa.RSAPublicKey):
        rn = pub.public_numbers()
        return {"e": _int_b64(rn.e), "kty": "RSA", "n": _int_b64(rn.n)}
    raw = pub.public_bytes_raw()
    return {"crv": "Ed25519", "kty": "OKP", "x": b64e(raw)}


def key_from_jwk(jwk: Any) -> PublicKey:
    """Parse a public JWK; a bad or unsupported one is badPublicKey / malformed."""
    if not isinstance(jwk, dict):
        raise malformed("jwk must be a JSON object")
    if "d" in jwk:
        raise problem(ProblemType.BAD_PUBLIC_KEY, "jwk contains private key material")
    kty = jwk.get("kty")
    try:
        if kty == "EC" and jwk.get("crv") in _CURVES:
            curve = _CURVES[jwk["crv"]][0]()
            nums = ec.EllipticCurvePublicNumbers(_b64_int(jwk["x"]), _b64_int(jwk["y"]), curve)
            return nums.public_key()
        if kty == "RSA":
            return rsa.RSAPublicNumbers(_b64_int(jwk["e"]), _b64_int(jwk["n"])).public_key()
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(b64d(jwk["x"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise problem(ProblemType.BAD_PUBLIC_KEY, f"invalid {kty} key: {exc}") from exc
    raise problem(ProblemType.BAD_PUBLIC_KEY, f"unsupported key type {kty!r}")


def thumbprint(key: PublicKey | PrivateKey | dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    jwk = key if isinstance(key, dict) else jwk_from_key(key)
    canonical = json.dumps(
        {k: jwk[k] for k in sorted(jwk) if k in ("crv", "e", "kty", "n", "x", "y")},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64e(hashlib.sha256(canonical.encode()).digest())


def alg_for_key(key: PublicKey | PrivateKey) -> Alg:
    pub = key.public_key() if not isinstance(key, PublicKey) else key
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return {"secp256r1": Alg.ES256, "secp384r1": Alg.ES384}[pub.curve.name]
    if isinstance(pub, rsa.RSAPublicKey):
        return Alg.RS256
    return Alg.EDDSA


# ES256 and ES384 (RFC 7518 §3.4): the signature scheme, the width of r and of s, and the
# curve. The schemes are immutable, so made once rather than with every signature.
_ES256 = (ec.ECDSA(hashes.SHA256()), 32, "secp256r1")
_ES384 = (ec.ECDSA(hashes.SHA384()), 48, "secp384r1")


def _ec_scheme(alg: str) -> tuple[ec.ECDSA, int, str]:
    return _ES256 if alg == Alg.ES256 else _ES384


def raw_sign(key: PrivateKey, alg: str, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        scheme, size, _ = _ec_scheme(alg)
        r, s = decode_dss_signature(key.sign(data, scheme))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def raw_verify(key: PublicKey, alg: str, data: bytes, sig: bytes) -> bool:
    """True when `sig` is a valid `alg` signature by `key`; the alg must fit the key."""
    try:
        if is_ec_public(key):
            if alg not in (Alg.ES256, Alg.ES384):
                return False
            scheme, size, curve = _ec_scheme(alg)
            if key.curve.name != curve or len(sig) != 2 * size:
                return False
            r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
            key.verify(encode_dss_signature(r, s), data, scheme)
        elif is_rsa_public(key):
            if alg != Alg.RS256:
                return False
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            if alg != Alg.EDDSA:
                return False
            key.verify(sig, data)
    except InvalidSignature:
        return False
    return True


@frozen_for_mypy  # built every request: docs/decisions.md
class Jws:
    """A parsed flattened JWS (RFC 7515 §7.2.2). `payload` is empty for POST-as-GET."""

    protected: dict[str, Any]
    protected_b64: str
    payload_b64: str
    signature: bytes
    decoded_payload: bytes = b""  # payload_b64 decoded once, when the JWS was parsed

    @property
    def alg(self) -> str:
        return str(self.protected.get("alg", ""))

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")

    def payload_json(self) -> Any:
        """The decoded JSON payload; None for POST-as-GET (an empty payload)."""
        if self.decoded_payload == b"":
            return None
        return jsontext.loads(self.decoded_payload, "payload")

    def verify(self, key: PublicKey) -> bool:
        return raw_verify(key, self.alg, self.signing_input, self.signature)


def parse_jws(body: bytes | Any) -> Jws:
    """Parse the flattened JSON form; any structural fault is malformed (§6.2)."""
    doc = body
    if isinstance(body, bytes | str):
        doc = jsontext.loads(body, "request body")
    if not isinstance(doc, dict):
        raise malformed("JWS must be a JSON object")
    if "signatures" in doc or "header" in doc:
        raise malformed("JWS must use the flattened serialization with no unprotected header")
    # Three calls, not a generator over the names: one request, one JWS, and a generator
    # is a function object and a frame made and dropped each time.
    protected_b64 = doc.get("protected")
    payload_b64 = doc.get("payload")
    sig_b64 = doc.get("signature")
    if not (
        isinstance(protected_b64, str) and isinstance(payload_b64, str) and isinstance(sig_b64, str)
    ):
        raise malformed("JWS needs string protected, payload and signature members")
    protected = jsontext.loads(b64d(protected_b64), "protected header")
    if not isinstance(protected, dict):
        raise malformed("protected header must be a JSON object")
    if "crit" in protected:
        # RFC 7515 §4.1.11: a recipient must refuse extensions it does not understand,
        # and ACME defines none (RFC 8555 §6.2), so any crit names an unknown one.
        raise malformed(f"unsupported critical header parameters {protected['crit']!r}")
    # Decoded now, once: this also checks that the signing input is ASCII (RFC 7515 §5.2).
    payload = b64d(payload_b64)
    return Jws(protected, protected_b64, payload_b64, b64d(sig_b64), payload)


def sign(
    key: PrivateKey,
    payload: Any,
    *,
    url: str,
    nonce: str | None,
    kid: str | None = None,
) -> dict[str, str]:
    """Sign an ACME request: `kid` when given, else the embedded `jwk` (§6.2).

    `payload` None means POST-as-GET (empty payload); bytes are sent as they are.
    """
    alg = alg_for_key(key)
    header: dict[str, Any] = {"alg": str(alg), "url": url}
    if nonce is not None:
        header["nonce"] = nonce
    if kid is not None:
        header["kid"] = kid
    else:
        header["jwk"] = jwk_from_key(key)
    return _assemble(header, payload, lambda data: raw_sign(key, alg, data))


def _encode_payload(payload: Any) -> str:
    if payload is None:
        return ""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return b64e(raw)


def _assemble(header: dict[str, Any], payload: Any, signer: Any) -> dict[str, str]:
    protected_b64 = b64e(json.dumps(header, separators=(",", ":")).encode())
    payload_b64 = _encode_payload(payload)
    sig = signer(f"{protected_b64}.{payload_b64}".encode("ascii"))
    return {"protected": protected_b64, "payload": payload_b64, "signature": b64e(sig)}


def eab_sign(account_key: PrivateKey, kid: str, hmac_key: bytes, url: str) -> dict[str, str]:
    """The externalAccountBinding member of newAccount (§7.3.4): HS256 over the JWK."""
    header = {"alg": "HS256", "kid": kid, "url": url}
    return _assemble(
        header,
        jwk_from_key(account_key),
        lambda data: hmac.new(hmac_key, data, hashlib.sha256).digest(),
    )


def eab_verify(jws: Jws, hmac_key: bytes) -> bool:
    if jws.alg not in ("HS256", "HS384", "HS512"):
        return False
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[jws.alg]
    expected = hmac.new(hmac_key, jws.signing_input, digest).digest()
    return hmac.compare_digest(expected, jws.signature)

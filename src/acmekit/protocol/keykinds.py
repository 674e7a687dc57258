"""Which of `cryptography`'s key classes a key is, told cheaply on the request path.

`cryptography`'s key classes are abstract: its Rust key types are registered under them,
so `isinstance(key, ec.EllipticCurvePublicKey)` runs `ABCMeta.__instancecheck__`, some
4,000 instructions, and the CA asks several times a request (each JWS, each CSR's key,
each signature). Whether a class is registered under another does not change once
`cryptography` is imported, so the answer is remembered per concrete class: a call here
is about 1,500 instructions. The answer is `issubclass(type(key), ...)`, which is
`isinstance` for every key; only an object that lies about its `__class__` (a proxy)
could be told apart, and keys are never such.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

if TYPE_CHECKING:  # typing's own from Python 3.13; read only by the type checker here
    from typing_extensions import TypeIs


# issubclass, remembered (a class is hashable, whatever the type checker makes of it).
_is_subclass = cast("Callable[[type, type | tuple[type, ...]], bool]", functools.cache(issubclass))


# What a key file loads (`cryptography`'s own private keys), as one tuple of classes.
FILE_KEYS = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)


def is_ec_public(key: object) -> TypeIs[ec.EllipticCurvePublicKey]:
    return _is_subclass(type(key), ec.EllipticCurvePublicKey)


def is_rsa_public(key: object) -> TypeIs[rsa.RSAPublicKey]:
    return _is_subclass(type(key), rsa.RSAPublicKey)


def is_ed25519_public(key: object) -> TypeIs[ed25519.Ed25519PublicKey]:
    return _is_subclass(type(key), ed25519.Ed25519PublicKey)


def is_ed25519_private(key: object) -> TypeIs[ed25519.Ed25519PrivateKey]:
    return _is_subclass(type(key), ed25519.Ed25519PrivateKey)


def is_file_key(
    key: object,
) -> TypeIs[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey]:
    """Whether `key` is one of `cryptography`'s private keys (FILE_KEYS)."""
    return _is_subclass(type(key), FILE_KEYS)

"""certbot's account store: `accounts/SERVER/ACCOUNT_ID/{meta.json,private_key.json,regr.json}`.

SERVER is the directory URL's host[:port] followed by its path (certbot's
`server_path`, e.g. `acme-v02.api.letsencrypt.org/directory`). ACCOUNT_ID is the MD5,
in hex, of the account public key in PEM SubjectPublicKeyInfo form (certbot's
`Account.id`). `private_key.json` is the key as a JWK with its private members,
`regr.json` is `{"body": {}, "uri": ACCOUNT_URL}`, and `meta.json` holds the creation
time and host. Files are written atomically; the key file is mode 0600.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmekit.client.errors import ClientError
from acmekit.files import atomic_write, make_dirs
from acmekit.protocol.jose import PrivateKey, b64d, b64e, jwk_from_key

_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
}


class AccountStoreError(ClientError):
    """An account is missing or its files cannot be read."""


def account_id(key: PrivateKey) -> str:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.md5(pem, usedforsecurity=False).hexdigest()


def _int(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64e(value.to_bytes(length, "big"))


def _num(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, str):
        raise AccountStoreError(f"account key has no {name!r}")
    return int.from_bytes(b64d(value.rstrip("=")), "big")


def private_jwk(key: PrivateKey) -> dict[str, str]:
    """The JWK with private members, as josepy writes it for certbot."""
    doc = jwk_from_key(key)
    if isinstance(key, rsa.RSAPrivateKey):
        p = key.private_numbers()
        doc.update(
            d=_int(p.d), p=_int(p.p), q=_int(p.q), dp=_int(p.dmp1), dq=_int(p.dmq1),
            qi=_int(p.iqmp),
        )  # fmt: skip
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        doc["d"] = _int(key.private_numbers().private_value, _CURVES[doc["crv"]][1])
    else:
        raise AccountStoreError("only RSA and ECDSA account keys are stored")
    return doc


def key_from_private_jwk(doc: dict[str, Any]) -> PrivateKey:
    if doc.get("kty") == "RSA":
        pub = rsa.RSAPublicNumbers(_num(doc, "e"), _num(doc, "n"))
        p, q, d = _num(doc, "p"), _num(doc, "q"), _num(doc, "d")
        return rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), pub
        ).private_key()
    if doc.get("kty") == "EC" and doc.get("crv") in _CURVES:
        curve = _CURVES[doc["crv"]][0]
        return ec.derive_private_key(_num(doc, "d"), curve)
    raise AccountStoreError(f"unsupported account key type {doc.get('kty')!r}")


def server_path(server: str) -> str:
    parts = urlsplit(server)
    return parts.netloc + parts.path


@dataclass(frozen=True)
class StoredAccount:
    id: str
    server: str
    uri: str
    key: PrivateKey = field(repr=False)
    created: str = ""
    directory: Path = Path()


class AccountStore:
    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir.absolute()

    def server_dir(self, server: str) -> Path:
        return self.config_dir / "accounts" / server_path(server)

    def ids(self, server: str) -> list[str]:
        base = self.server_dir(server)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "regr.json").is_file())

    def load(self, server: str, ident: str) -> StoredAccount:
        directory = self.server_dir(server) / ident
        try:
            regr = json.loads((directory / "regr.json").read_text())
            key_doc = json.loads((directory / "private_key.json").read_text())
            meta = json.loads((directory / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            raise AccountStoreError(f"account {ident} for {server}: {exc}") from exc
        key = key_from_private_jwk(key_doc)
        return StoredAccount(
            ident, server, str(regr.get("uri", "")), key, str(meta.get("creation_dt", "")),
            directory,
        )  # fmt: skip

    def find(self, server: str, ident: str | None = None) -> StoredAccount | None:
        """The named account, or the oldest one stored for `server`."""
        if ident is not None:
            return self.load(server, ident) if ident in self.ids(server) else None
        found = [self.load(server, i) for i in self.ids(server)]
        return min(found, key=lambda a: (a.created, a.id)) if found else None

    def save(self, server: str, key: PrivateKey, uri: str, now: datetime) -> StoredAccount:
        ident = account_id(key)
        directory = self.server_dir(server) / ident
        # Every level 0700 as certbot makes them (accounts/HOST/PATH/ID): mkdir's parents
        # would take the umask's mode instead.
        level = self.config_dir / "accounts"
        make_dirs(level, 0o700)
        for part in directory.relative_to(level).parts:
            level /= part
            make_dirs(level, 0o700)
        meta = {"creation_dt": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "creation_host": _host()}
        # certbot's mode for the key: read-only to its owner.
        atomic_write(directory / "private_key.json", json.dumps(private_jwk(key)).encode(), 0o400)
        atomic_write(directory / "meta.json", json.dumps(meta).encode())
        self.write_regr(directory, uri)
        return StoredAccount(ident, server, uri, key, meta["creation_dt"], directory)

    def write_regr(self, directory: Path, uri: str) -> None:
        atomic_write(directory / "regr.json", json.dumps({"body": {}, "uri": uri}).encode())

    def delete(self, account: StoredAccount) -> None:
        shutil.rmtree(account.directory)
        base = self.server_dir(account.server)
        if base.is_dir() and not any(base.iterdir()):
            base.rmdir()


def _host() -> str:
    return socket.getfqdn()

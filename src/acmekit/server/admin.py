"""Operator actions on a CA's database, behind `acmekit server eab ...` and `ari move`.

EAB keys (RFC 8555 §7.3.4) made here live in the `eab_keys` table; a key binds to the
first account whose newAccount carries a valid binding with it, and a revoked key binds
no further accounts. Moving a certificate's ARI window (RFC 9773 §4.2) makes every
client that asks for its renewal information see a window starting at the chosen time.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from acmekit.protocol.jose import b64e
from acmekit.server.records import CertificateRecord, EabKey
from acmekit.server.store import Store

HMAC_BYTES = 32


class AdminError(Exception):
    """An operator's request that cannot be done (unknown key, unknown serial)."""


def add_eab_key(store: Store, now: datetime, kid: str | None = None) -> EabKey:
    key = EabKey(
        kid=kid or secrets.token_urlsafe(12),
        hmac_key=b64e(secrets.token_bytes(HMAC_BYTES)),
        created=now,
    )
    if not key.kid or len(key.kid) > 255:
        raise AdminError("a key ID is 1 to 255 characters")
    if not store.accounts.add_eab_key(key):
        raise AdminError(f"key ID {key.kid!r} exists already")
    return key


def revoke_eab_key(store: Store, kid: str, now: datetime) -> None:
    if store.accounts.eab_key(kid) is None:
        raise AdminError(f"no key {kid!r}")
    if not store.accounts.revoke_eab_key(kid, now):
        raise AdminError(f"key {kid!r} is revoked already")


def describe_eab_key(key: EabKey) -> str:
    """One line for `eab list`; never the HMAC key."""
    state = "revoked" if key.revoked else "unused"
    if key.account_id:
        state = f"bound to account {key.account_id}" + (" (revoked)" if key.revoked else "")
    return f"{key.kid}\t{key.created.strftime('%Y-%m-%dT%H:%M:%SZ')}\t{state}"


def move_ari_window(store: Store, serial_hex: str, start: datetime) -> CertificateRecord:
    serial = serial_hex.lower().replace(":", "").lstrip("0") or "0"
    rec = store.certificates.certificate_by_serial(serial)
    if rec is None or rec.pem is None:
        raise AdminError(f"no certificate with serial {serial_hex}")
    store.certificates.move_ari_window(rec.id, start)
    return rec

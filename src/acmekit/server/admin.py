"""Operator actions on a CA's database, behind `acmekit server eab ...`, `ari move`,
`certs ...`, `accounts ...` and `orders list`.

EAB keys (RFC 8555 §7.3.4) made here live in the `eab_keys` table; a key binds to the
first account whose newAccount carries a valid binding with it, and a revoked key binds
no further accounts. Moving a certificate's ARI window (RFC 9773 §4.2) makes every
client that asks for its renewal information see a window starting at the chosen time.

Certificates, accounts and orders are listed through read-only queries
(repos/inspect.py). A revocation is recorded as the ACME path records one (RFC 8555
§7.6: `CertificateRepository.revoke`, and keyCompromise puts the key on the blocklist),
so every CRL made after it lists the certificate, and ARI answers a window in the past;
the CLI then remakes the certificate's CRL shard at once where it can sign
(`remake_crl`). Deactivating an account (§7.3.6) sets its status, which every later
request signed by its key is refused for, and deactivates its pending authorizations.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.protocol.jose import b64e
from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    OrderStatus,
    RevocationReason,
    authorization_status,
    order_status,
)
from acmekit.server import render
from acmekit.server.keycheck import spki_sha256
from acmekit.server.records import AccountRecord, CertificateRecord, EabKey, OrderRecord
from acmekit.server.repos import inspect
from acmekit.server.store import Store

if TYPE_CHECKING:
    from acmekit.server.ca import Issuer
    from acmekit.server.config import ServerConfig

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
    return f"{key.kid}\t{render.rfc3339(key.created)}\t{state}"


def stored_serial(serial_hex: str) -> str:
    """A serial as an operator types it (hex, any case, colons allowed, leading zeros)
    as the database stores it: lower-case hex without leading zeros."""
    serial = serial_hex.strip().lower().replace(":", "")
    if not serial or any(c not in "0123456789abcdef" for c in serial):
        raise AdminError(f"{serial_hex!r} is not a serial number in hex")
    return serial.lstrip("0") or "0"


def move_ari_window(store: Store, serial_hex: str, start: datetime) -> CertificateRecord:
    serial = serial_hex.lower().replace(":", "").lstrip("0") or "0"
    rec = store.certificates.certificate_by_serial(serial)
    if rec is None or rec.pem is None:
        raise AdminError(f"no certificate with serial {serial_hex}")
    store.certificates.move_ari_window(rec.id, start)
    return rec


def rfc3339(when: datetime | None) -> str:
    return "-" if when is None else render.rfc3339(when)


# ---------------------------------------------------------------------------------------
# Certificates

REASON_CODES = RevocationReason.RFC_NAMES
REASON_NAMES = {code: name for name, code in REASON_CODES.items()}
KEY_COMPROMISE = REASON_CODES["keyCompromise"]
OPERATOR_REASONS = RevocationReason.SUBSCRIBER_NAMES


def reason_name(code: int | None) -> str:
    return REASON_NAMES.get(code or 0, str(code))


def certificate_status(rec: CertificateRecord, now: datetime) -> str:
    """valid, revoked:REASON or expired (a revoked certificate stays revoked)."""
    if rec.revoked_at is not None:
        return f"revoked:{reason_name(rec.revocation_reason)}"
    return "expired" if rec.not_after <= now else "valid"


def names_of(rec: CertificateRecord | OrderRecord) -> list[str]:
    return [i.value for i in rec.identifiers]


def certificate_line(rec: CertificateRecord, now: datetime) -> str:
    """One line of `certs list`: serial, notAfter, status, account, names (tabs)."""
    fields = (
        rec.serial,
        rfc3339(rec.not_after),
        certificate_status(rec, now),
        rec.account_id or "-",
        ",".join(names_of(rec)),
    )
    return "\t".join(fields)


def certificate_json(rec: CertificateRecord, now: datetime) -> dict[str, Any]:
    """`certs list --json`: the same keys for every certificate (null where unset)."""
    return {
        "serial": rec.serial,
        "status": certificate_status(rec, now),
        "names": names_of(rec),
        "account_id": rec.account_id,
        "order_id": rec.order_id,
        "not_before": rfc3339(rec.not_before),
        "not_after": rfc3339(rec.not_after),
        "issued": rfc3339(rec.issued),
        "revoked_at": None if rec.revoked_at is None else rfc3339(rec.revoked_at),
        "revocation_reason": (
            None if rec.revoked_at is None else reason_name(rec.revocation_reason)
        ),
    }


def list_certificates(
    store: Store, where: inspect.CertificateFilter, now: datetime
) -> list[CertificateRecord]:
    return inspect.list_certificates(store.db, where, now)


def find_certificate(store: Store, serial_hex: str) -> CertificateRecord:
    """The issued certificate (or signed precertificate) with this serial."""
    rec = store.certificates.certificate_by_serial(stored_serial(serial_hex))
    if rec is None or (rec.pem is None and rec.precert is None):
        raise AdminError(f"no certificate with serial {serial_hex}")
    return rec


def leaf_of(rec: CertificateRecord) -> x509.Certificate:
    """The certificate itself, or its precertificate when only that was signed."""
    if rec.pem is not None:
        return x509.load_pem_x509_certificates(rec.pem.encode())[0]
    assert rec.precert is not None
    return x509.load_der_x509_certificate(rec.precert)


def certificate_pem(rec: CertificateRecord) -> str:
    """The stored chain in PEM, or the precertificate's when only that was signed."""
    if rec.pem is not None:
        return rec.pem
    return leaf_of(rec).public_bytes(serialization.Encoding.PEM).decode()


def describe_certificate(store: Store, rec: CertificateRecord, now: datetime) -> list[str]:
    """`certs show`: every field, one `name: value` a line."""
    window = store.certificates.ari_window_start(rec.id)
    leaf = leaf_of(rec)
    fields = [
        ("serial", rec.serial),
        ("status", certificate_status(rec, now)),
        ("names", ", ".join(names_of(rec))),
        ("account", rec.account_id or "-"),
        ("order", rec.order_id or "-"),
        ("issued", rfc3339(rec.issued)),
        ("not-before", rfc3339(rec.not_before)),
        ("not-after", rfc3339(rec.not_after)),
        ("revoked", rfc3339(rec.revoked_at)),
        ("reason", "-" if rec.revoked_at is None else reason_name(rec.revocation_reason)),
        ("key", f"sha256 {spki_sha256(leaf.public_key())}"),
        ("key blocked", "yes" if store.certificates.key_blocked(_spki(leaf)) else "no"),
        ("ari window moved to", rfc3339(window)),
        ("replaced by order", store.certificates.replacement(rec.id) or "-"),
        ("certificate", "stored" if rec.pem is not None else "precertificate only"),
        ("certificate id", rec.id),
    ]
    return [f"{name}: {value}" for name, value in fields]


def _spki(leaf: x509.Certificate) -> str:
    return spki_sha256(leaf.public_key())


def revoke_certificate(
    store: Store, serial_hex: str, reason: str, now: datetime
) -> CertificateRecord:
    """Revoke as the ACME path does (RFC 8555 §7.6): the revocation stored once, and
    for keyCompromise the certificate's key blocked for every later order and account.
    The record as it is now revoked."""
    if reason not in OPERATOR_REASONS:
        raise AdminError(f"reason {reason!r} is not one of {', '.join(OPERATOR_REASONS)}")
    rec = find_certificate(store, serial_hex)
    code = REASON_CODES[reason]
    block = (_spki(leaf_of(rec)), rec.serial) if code == KEY_COMPROMISE else None
    if rec.revoked_at is not None or not store.certificates.revoke(rec.id, code, now, block):
        current = store.certificates.certificate(rec.id) or rec
        raise AdminError(
            f"certificate {rec.serial} is already revoked "
            f"({reason_name(current.revocation_reason)}, {rfc3339(current.revoked_at)})"
        )
    revoked = store.certificates.certificate(rec.id)
    assert revoked is not None
    return revoked


def remake_crl(config: ServerConfig, store: Store, serial: str, now: datetime, shards: int) -> int:
    """Sign and store a new CRL for the shard of `shards` that lists `serial`, as the CA
    does right after a revocation (the CA's processes serve the stored one); the shard's
    number. `shards` is the serving CA's count (`crl.recorded_shards`): with another, the
    CRL stored would list another shard's entries. The shard's URL is the one its stored
    CRL names (the CA's listener may have been given on its command line rather than in
    the TOML file). AdminError if the CA's signing key cannot be used from here: the CA's
    next scheduled CRL lists it then, within `[crl] regenerate_every`."""
    from dataclasses import replace

    from acmekit.clock import SystemClock
    from acmekit.server.crl import CrlPublisher, shard_of
    from acmekit.server.lint import Linter
    from acmekit.server.signing import SignerUnavailable

    shard = shard_of(int(serial, 16), shards)
    issuer = _existing_issuer(config, now)
    base = _stored_crl_base(store, shard) or config.crl_base_url
    linter = Linter.for_config(config)
    settings = replace(config.crl, shards=shards)
    publisher = CrlPublisher(settings, base, store, issuer, SystemClock().now, linter)
    try:
        publisher.regenerate(shard)
    except (SignerUnavailable, RuntimeError) as exc:
        raise AdminError(f"CRL shard {shard} not remade: {exc}") from None
    return shard


def _stored_crl_base(store: Store, shard: int) -> str | None:
    """The base URL in the Issuing Distribution Point of the shard's stored CRL."""
    from acmekit.server.crl import crl_url

    stored = store.certificates.crl(shard)
    if stored is None:
        return None
    try:
        crl = x509.load_der_x509_crl(stored.der)
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
        url = str(idp.full_name[0].value) if idp.full_name else ""
    except (ValueError, x509.ExtensionNotFound):
        return None
    tail = crl_url("", shard)
    return url.removesuffix(tail) if url.endswith(tail) else None


def _existing_issuer(config: ServerConfig, now: datetime) -> Issuer:
    """The CA's hierarchy as its server loads it (a file key, or the token of `[hsm]`
    with the PIN it names); never a new one (AdminError instead)."""
    import os

    from acmekit.server.hsm import read_pin
    from acmekit.server.run import _issuer
    from acmekit.server.signing import SignerUnavailable

    state = config.state_dir
    needed: tuple[str, ...] = ("root.pem", "intermediate.pem")
    if config.hsm is None:  # the server would make what is missing: this may not
        needed += ("root.key", "intermediate.key")
    missing = [name for name in needed if not (state / name).exists()]
    if missing:
        raise AdminError(f"{state} lacks {', '.join(missing)}")
    try:
        pin = None
        if config.hsm is not None:
            pin = read_pin(config.hsm.pin_file, config.hsm.pin_env, os.environ)
        return _issuer(config, now, pin)
    except (ValueError, OSError, SignerUnavailable) as exc:  # HsmError is a ValueError
        raise AdminError(str(exc)) from None


# ---------------------------------------------------------------------------------------
# Accounts and orders


def find_account(store: Store, account_id: str) -> AccountRecord:
    account = store.accounts.account(account_id)
    if account is None:
        raise AdminError(f"no account {account_id}")
    return account


def shown(text: str) -> str:
    """`text` for an operator's terminal and line-reading tools: what a client chose
    (a contact) may hold characters check_contacts lets through that a terminal acts
    on (C1 controls, CSI among them) or that end a line for some readers (U+0085,
    U+2028); those, and any other that is not printable, are written as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def account_line(account: AccountRecord) -> str:
    """One line of `accounts list`: id, status, created, contacts (tabs)."""
    fields = (account.id, str(account.status), rfc3339(account.created))
    return "\t".join((*fields, shown(",".join(account.contact)) or "-"))


def describe_account(store: Store, account: AccountRecord, now: datetime) -> list[str]:
    counts = inspect.account_counts(store.db, account.id)
    pending, _ = store.orders.pending_authorizations(account.id, now)
    fields = [
        ("account", account.id),
        ("status", str(account.status)),
        ("created", rfc3339(account.created)),
        ("contact", shown(", ".join(account.contact)) or "-"),
        ("key thumbprint", account.thumbprint),
        ("eab key", account.eab_kid or "-"),
        ("orders", str(counts.orders)),
        ("certificates", f"{counts.certificates} ({counts.revoked} revoked)"),
        ("pending authorizations", str(pending)),
    ]
    return [f"{name}: {value}" for name, value in fields]


def deactivate_account(store: Store, account_id: str, now: datetime) -> int:
    """RFC 8555 §7.3.6: the account's status deactivated (its key's requests are refused
    from then on, auth.py), and its pending authorizations deactivated (§7.5.2), which
    leaves its pending orders invalid; the number of authorizations deactivated."""
    account = find_account(store, account_id)
    if account.status != AccountStatus.VALID:
        raise AdminError(f"account {account_id} is {account.status} already")
    store.accounts.update_account(account.id, status=AccountStatus.DEACTIVATED)
    pending = inspect.pending_authorization_ids(store.db, account.id, now)
    for authz_id in pending:
        store.orders.set_authorization_status(authz_id, AuthorizationStatus.DEACTIVATED)
    return len(pending)


@dataclass(frozen=True)
class OrderLine:
    order: OrderRecord
    status: OrderStatus

    def text(self) -> str:
        """id, status, created, expires, names (tabs)."""
        o = self.order
        fields = (o.id, str(self.status), rfc3339(o.created), rfc3339(o.expires))
        return "\t".join((*fields, ",".join(names_of(o))))


_AUTHZ_BATCH = 1000


def list_orders(store: Store, account_id: str, limit: int, now: datetime) -> list[OrderLine]:
    """The account's orders, newest first, with their status as §7.1.6 derives it."""
    find_account(store, account_id)
    found = inspect.list_orders(store.db, account_id, limit)
    authz_ids = list(dict.fromkeys(i for o in found for i in o.authz_ids))
    # Read in batches: a statement has a parameter per id, and PostgreSQL takes at most
    # 65,535 (656 orders of 100 names are more).
    authzs = [
        a
        for at in range(0, len(authz_ids), _AUTHZ_BATCH)
        for a in store.orders.authorizations(authz_ids[at : at + _AUTHZ_BATCH])
    ]
    statuses = {
        a.id: authorization_status(
            a.stored_status, (c.status for c in a.challenges), a.expires, now
        )
        for a in authzs
    }
    return [
        OrderLine(
            o,
            order_status(
                (statuses.get(i, AuthorizationStatus.EXPIRED) for i in o.authz_ids),
                expires=o.expires,
                now=now,
                finalizing=o.finalize_started is not None,
                has_certificate=o.certificate_id is not None,
                failed=o.error is not None,
            ),
        )
        for o in found
    ]

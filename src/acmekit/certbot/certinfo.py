"""What `certificates` reports about each lineage, as plain JSON-ready data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from acmekit.certbot.lineage import Lineage, LineageError, LineageStore, key_type_of
from acmekit.certbot.renewalconf import get_section, get_str


def describe(lineage: Lineage, now: datetime) -> dict[str, Any]:
    cert = lineage.certificate
    if cert is None:
        raise LineageError(f"cannot read certificate {lineage.path('cert')}")
    params = get_section(lineage.conf, "renewalparams")
    days_left = (cert.not_valid_after_utc - now).days
    return {
        "name": lineage.name,
        "domains": lineage.names,
        "serial": f"{cert.serial_number:x}",
        "key_type": key_type_of(cert),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": days_left,
        "valid": cert.not_valid_before_utc <= now < cert.not_valid_after_utc,
        "version": lineage.current_version("cert"),
        "cert_path": str(lineage.path("cert")),
        "chain_path": str(lineage.path("chain")),
        "fullchain_path": str(lineage.path("fullchain")),
        "privkey_path": str(lineage.path("privkey")),
        "server": get_str(params, "server"),
        "authenticator": get_str(params, "authenticator"),
    }


def describe_lineages(
    store: LineageStore, now: datetime, only: str | None = None
) -> dict[str, Any]:
    """{"certificates": [...], "errors": [...]} for every lineage (or just `only`)."""
    certs: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for name in [only] if only else store.names():
        try:
            certs.append(describe(store.load(name), now))
        except LineageError as exc:
            errors.append({"name": name, "error": str(exc)})
    return {"certificates": certs, "errors": errors}

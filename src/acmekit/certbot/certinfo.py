"""What `certificates` reports about each lineage, as plain JSON-ready data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509

from acmekit.certbot.ctcheck import issuer_from, sct_report
from acmekit.certbot.lineage import Lineage, LineageError, LineageStore, key_type_of
from acmekit.certbot.renewalconf import get_section, get_str
from acmekit.protocol.ct import LogList


def describe(lineage: Lineage, now: datetime, logs: LogList | None = None) -> dict[str, Any]:
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
        **sct_report(cert, _issuer(lineage, cert), logs),
    }


def _issuer(lineage: Lineage, cert: x509.Certificate) -> x509.Certificate | None:
    """The certificate of the lineage's chain.pem that issued `cert`."""
    try:
        chain = x509.load_pem_x509_certificates(lineage.path("chain").read_bytes())
    except (OSError, ValueError, LineageError):
        return None
    return issuer_from(cert, chain)


def describe_lineages(
    store: LineageStore,
    now: datetime,
    only: str | None = None,
    logs: LogList | None = None,
    domains: Sequence[str] = (),
) -> dict[str, Any]:
    """{"certificates": [...], "errors": [...]} for every lineage, or as certbot filters
    them: the one named `only`, those whose names include every one of `domains`. A name
    no lineage has matches nothing (certbot's "No certificates found."), not an error."""
    certs: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    wanted = {d.lower() for d in domains}
    for name in store.names():
        if only is not None and name != only:
            continue
        try:
            info = describe(store.load(name), now, logs)
        except LineageError as exc:
            errors.append({"name": name, "error": str(exc)})
            continue
        if wanted <= set(info["domains"]):
            certs.append(info)
    return {"certificates": certs, "errors": errors}

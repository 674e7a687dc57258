"""Where a certificate says its CRL is, and fetching it over HTTP as a relying party does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import aiohttp
import sqlalchemy as sa
from cryptography import x509


def crl_url(cert: x509.Certificate) -> str:
    """The first URI of the certificate's CRL distribution points (RFC 5280 §4.2.1.13)."""
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    names = cdp[0].full_name
    assert names is not None
    return str(names[0].value)


async def fetch(url: str, content_type: str | None = None) -> bytes:
    """GET `url`, which must answer 200 (with `content_type`, when given): its body."""
    async with aiohttp.ClientSession() as client, client.get(url) as resp:
        assert resp.status == 200
        if content_type is not None:
            assert resp.headers["Content-Type"] == content_type
        return await resp.read()


async def fetch_listing(url: str, serial: int, tries: int = 400) -> bytes:
    """The CRL at `url` once it lists `serial`: the CA remakes a shard's CRL soon after
    a revocation, not before answering it, so a relying party asks again meanwhile.
    AssertionError if it never does (`tries` fetches, 50 ms apart)."""
    for _ in range(tries):
        der = await fetch(url)
        if x509.load_der_x509_crl(der).get_revoked_certificate_by_serial_number(serial):
            return der
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never listed serial {serial:x}")


def insert_revoked(engine: sa.Engine, serials: Iterable[int], pem: str, prefix: str) -> None:
    """Revoked, unexpired certificates (30 days left) with `pem`, straight into the CA's
    table: a CRL's entries without issuing them. Each row's id is `prefix` and its
    serial in hex."""
    now = datetime.now(UTC)
    us = int(now.timestamp() * 1_000_000)
    later = int((now + timedelta(days=30)).timestamp() * 1_000_000)
    rows = [
        {"id": f"{prefix}{s:x}", "serial": format(s, "x"), "pem": pem, "identifiers": "[]",
         "not_before": us, "not_after": later, "issued": us, "revoked_at": us,
         "revocation_reason": 4, "abandoned": False}
        for s in serials
    ]  # fmt: skip
    columns = ", ".join(rows[0])
    values = ", ".join(f":{c}" for c in rows[0])
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO certificates ({columns}) VALUES ({values})"), rows)

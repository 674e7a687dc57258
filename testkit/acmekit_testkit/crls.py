"""Where a certificate says its CRL is, and fetching it over HTTP as a relying party does."""

from __future__ import annotations

import aiohttp
from cryptography import x509


def crl_url(cert: x509.Certificate) -> str:
    """The first URI of the certificate's CRL distribution points (RFC 5280 §4.2.1.13)."""
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    names = cdp[0].full_name
    assert names is not None
    return str(names[0].value)


async def fetch(url: str) -> bytes:
    """GET `url`, which must answer 200: its body."""
    async with aiohttp.ClientSession() as client, client.get(url) as resp:
        assert resp.status == 200
        return await resp.read()

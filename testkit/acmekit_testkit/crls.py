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


async def fetch(url: str, content_type: str | None = None) -> bytes:
    """GET `url`, which must answer 200 (with `content_type`, when given): its body."""
    async with aiohttp.ClientSession() as client, client.get(url) as resp:
        assert resp.status == 200
        if content_type is not None:
            assert resp.headers["Content-Type"] == content_type
        return await resp.read()

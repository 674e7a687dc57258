"""A tls-alpn-01 responder on loopback: TLS with a given certificate and ALPN list.

It completes the handshake, then waits for the peer to go away. Any certificate can be
served, so tests can present correct and deliberately wrong validation certificates.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client.solvers.tlsalpn import load_certificate
from acmekit_testkit.tcpstub import tcp_server


def server_context(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, alpn: Sequence[str]
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_certificate(ctx, cert, key)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


@asynccontextmanager
async def tlsalpn_responder(
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    alpn: Sequence[str] = ("acme-tls/1",),
) -> AsyncIterator[int]:
    """Serve `cert` on 127.0.0.1; yields the port."""
    async with tcp_server(ssl_context=server_context(cert, key, alpn)) as port:
        yield port

"""tls-alpn-01 answered by our own small TLS server (RFC 8737, RFC 8738 §6 for IPs).

One asyncio TLS server, started on first `present` (or by `start()`) and kept for the
life of the solver, serves every challenge presented. The validator connects with SNI
set to the name being validated (an IP address's reverse-DNS name, RFC 8738 §6) and
offers ALPN `acme-tls/1`. The listening context has no certificate of its own: its
`sni_callback` swaps in, per server name, a context holding that name's validation
certificate (built by `acmekit.protocol.tlsalpn`, with a fresh P-256 key per challenge)
before the certificate is chosen. A server name with no challenge is refused with an
`unrecognized_name` alert. After the handshake the connection is closed once the peer
goes away or a few seconds pass; no application data is exchanged (RFC 8737 §3).

Names are reference-counted, so two orders presenting the same identifier may clean up
independently; the latest presented certificate is the one served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client.resources import Challenge
from acmekit.client.solvers.listening import ListeningSolver, Stop
from acmekit.protocol.challenges import ACME_TLS_ALPN
from acmekit.protocol.messages import Identifier
from acmekit.protocol.tlsalpn import tlsalpn01_certificate, tlsalpn01_sni

log = logging.getLogger(__name__)

LINGER_SECONDS = 10.0


def challenge_context(identifier: Identifier, key_authorization: str) -> ssl.SSLContext:
    """A server context presenting the RFC 8737 certificate for `identifier`."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = tlsalpn01_certificate(identifier, key_authorization, key)
    ctx = _base_context()
    load_certificate(ctx, cert, key)
    return ctx


def load_certificate(
    ctx: ssl.SSLContext, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    """Give `ctx` this certificate and key. ssl loads them only from files: a private
    directory that lives for the load."""
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.touch(mode=0o600)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx.load_cert_chain(cert_file, key_file)


def _base_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 §4
    ctx.set_alpn_protocols([ACME_TLS_ALPN])
    return ctx


class StandaloneTlsAlpnSolver(ListeningSolver[ssl.SSLContext]):
    """Validation certificates by server name, chosen in the handshake."""

    kind = "tls-alpn-01"

    def __init__(self, address: str = "", port: int = 443) -> None:
        super().__init__(address, port)

    def _listening_context(self) -> ssl.SSLContext:
        ctx = _base_context()
        ctx.sni_callback = self._choose
        return ctx

    def _choose(
        self, sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        found = self._answers.get((server_name or "").lower().rstrip("."))
        if found is None:
            log.debug("tls-alpn-01: no challenge for server name %r", server_name)
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sock.context = found
        return None

    async def _listen(self) -> Stop:
        server = await asyncio.start_server(
            self._serve, self.address or None, self.port, ssl=self._listening_context()
        )

        async def stop() -> None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

        return stop

    def _key(self, identifier: Identifier, challenge: Challenge) -> str:
        return tlsalpn01_sni(identifier).lower()

    @staticmethod
    async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.read(1024), LINGER_SECONDS)
        except (OSError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        await self.start()
        ctx = await asyncio.to_thread(challenge_context, identifier, key_authorization)
        self._answers.add(self._key(identifier, challenge), ctx)
        log.debug("presenting tls-alpn-01 for %s", identifier.value)

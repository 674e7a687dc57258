"""`check`: fetch the certificate a TLS server presents and verify it.

The certificate is fetched over a connection that does not verify (so an expired or
untrusted one can still be shown), then a second handshake verifies it with the
system roots or the given bundle, checking the host name against `servername`.
"""

from __future__ import annotations

import _ssl
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from acmekit.certbot.lineage import certificate_names
from acmekit.hostport import parse_host_port


@dataclass(frozen=True)
class TlsCheck:
    subject: str
    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    days_left: int
    verified: bool
    verify_error: str = ""
    certificate: x509.Certificate | None = None  # what the server presented
    chain: tuple[x509.Certificate, ...] = ()  # the certificates sent after it


def parse_target(target: str) -> tuple[str, int]:
    """HOST, HOST:PORT or [V6]:PORT; port 443 by default."""
    return parse_host_port(target, 443)


def _handshake(
    host: str, port: int, sni: str, ctx: ssl.SSLContext, timeout: float
) -> tuple[bytes, list[bytes]]:
    """The leaf's DER and the DER of every certificate the server sent (leaf first)."""
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        sent = _sent_chain(tls)
    if der is None:
        raise ssl.SSLError("server sent no certificate")
    return der, sent


def _sent_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The chain as sent (RFC 8446 §4.4.2), so that `check` finds the issuer the server
    presents. Python 3.13 has SSLSocket.get_unverified_chain; 3.10-3.12 have it on the
    underlying _ssl object, returning certificate objects instead of DER."""
    public: Any = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return [bytes(c) for c in public() or []]
    private: Any = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if private is None:
        return []
    return [c.public_bytes(_ssl.ENCODING_DER) for c in private() or []]


def check_tls(
    host: str, port: int, servername: str, ca_bundle: str | None, timeout: float, now: datetime
) -> TlsCheck:
    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    der, sent = _handshake(host, port, servername, loose, timeout)
    cert = x509.load_der_x509_certificate(der)
    strict = ssl.create_default_context(cafile=ca_bundle)
    try:
        _handshake(host, port, servername, strict, timeout)
        verified, error = True, ""
    except ssl.SSLCertVerificationError as exc:
        verified, error = False, exc.verify_message or str(exc)
    except ssl.SSLError as exc:
        verified, error = False, str(exc)
    return TlsCheck(
        subject=cert.subject.rfc4514_string(),
        names=tuple(certificate_names(cert)),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        days_left=(cert.not_valid_after_utc - now).days,
        verified=verified,
        verify_error=error,
        certificate=cert,
        chain=tuple(x509.load_der_x509_certificate(d) for d in sent[1:]),
    )

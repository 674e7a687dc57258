"""tls-alpn-01 validation (RFC 8737; IP identifiers RFC 8738 §6).

The validation authority opens TLS (1.2 or later) to the identifier's address on the
configured port, sending SNI (the name, or an IP's reverse name) and offering only ALPN
`acme-tls/1`. It trusts nothing about the chain: the certificate is read in DER and must
have exactly one subjectAltName, the identifier, and the critical acmeIdentifier extension
holding SHA-256 of the key authorization (checked by `acmekit.protocol.tlsalpn`).

Addresses are tried in order until one accepts TCP: the A addresses, and the AAAA ones
(asked only then) when every A address refused or there is none; a TLS failure on an
address that accepted is final. Problems: a failed handshake or a wrong ALPN is `tls`, a
certificate that does not prove the key authorization is `incorrectResponse`, an address
that refuses or stays silent is `connection`.

One `ssl.SSLContext` serves every validation (making one costs about 21 ms).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from cryptography import x509

from acmekit.protocol.challenges import ACME_TLS_ALPN
from acmekit.protocol.messages import Identifier
from acmekit.protocol.problems import ProblemType, problem
from acmekit.protocol.tlsalpn import check_tlsalpn01_certificate, tlsalpn01_sni
from acmekit.server.validation.reserved import AddressPolicy
from acmekit.server.validation.resolve import DnsClient, connect_checked, first_accepting

log = logging.getLogger(__name__)


def tlsalpn01_context() -> ssl.SSLContext:
    """A client context that offers only acme-tls/1 and verifies no certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([ACME_TLS_ALPN])
    return ctx


async def validate_tlsalpn01(
    dns: DnsClient,
    ctx: ssl.SSLContext,
    port: int,
    identifier: Identifier,
    key_authorization: str,
    deadline: float,
) -> None:
    sni = tlsalpn01_sni(identifier)

    async def check(address: str) -> bool | None:
        """Check the peer at `address`; None if it refused TCP (try the next address)."""
        where = f"tls-alpn-01 for {identifier.value} at {_hostport(address, port)}"
        peer = await _handshake(dns.reachable, ctx, address, port, sni, where, deadline)
        if peer is None:
            return None
        _check_peer(where, *peer, identifier, key_authorization)
        return True

    if await first_accepting(dns, identifier.value, deadline, check):
        return
    raise problem(
        ProblemType.CONNECTION,
        f"tls-alpn-01 for {identifier.value}: no address accepted a connection on port {port}",
    )


async def _handshake(
    policy: AddressPolicy,
    ctx: ssl.SSLContext,
    address: str,
    port: int,
    sni: str,
    where: str,
    deadline: float,
) -> tuple[str | None, bytes | None] | None:
    """ALPN and DER certificate of the peer; None if it refused TCP (try the next address)."""
    try:
        async with asyncio.timeout_at(deadline):
            _, writer = await connect_checked(
                policy, where, address, port, tls=ctx, server_hostname=sni
            )
    except TimeoutError:
        raise problem(ProblemType.CONNECTION, f"{where}: timeout") from None
    except ssl.SSLError as exc:
        raise problem(ProblemType.TLS, f"{where}: TLS handshake failed: {_reason(exc)}") from None
    except ConnectionRefusedError:
        log.debug("tls-alpn-01 connection refused by %s", address)
        return None
    except OSError as exc:
        raise problem(ProblemType.CONNECTION, f"{where}: {_reason(exc)}") from None
    try:
        tls = writer.get_extra_info("ssl_object")
        if not isinstance(tls, ssl.SSLObject):
            raise problem(ProblemType.TLS, f"{where}: no TLS connection")
        return tls.selected_alpn_protocol(), tls.getpeercert(binary_form=True)
    finally:
        writer.transport.abort()


def _check_peer(
    where: str, alpn: str | None, der: bytes | None, identifier: Identifier, key_auth: str
) -> None:
    if alpn != ACME_TLS_ALPN:
        got = f"{alpn!r}" if alpn else "no protocol"
        raise problem(
            ProblemType.TLS, f"{where}: server did not negotiate ALPN {ACME_TLS_ALPN!r} ({got})"
        )
    if der is None:
        raise problem(ProblemType.TLS, f"{where}: server presented no certificate")
    try:
        wrong = check_tlsalpn01_certificate(
            x509.load_der_x509_certificate(der), identifier, key_auth
        )
    except ValueError as exc:
        raise problem(ProblemType.TLS, f"{where}: unreadable certificate: {_reason(exc)}") from None
    if wrong is not None:
        raise problem(ProblemType.INCORRECT_RESPONSE, f"{where}: {wrong}")


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]

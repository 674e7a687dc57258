"""The standalone tls-alpn-01 solver on loopback, checked as a validator would (RFC 8737)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
from cryptography import x509

from acmekit.client.resources import Challenge
from acmekit.client.solvers.tlsalpn import StandaloneTlsAlpnSolver
from acmekit.protocol.challenges import ACME_TLS_ALPN
from acmekit.protocol.messages import ChallengeStatus, ChallengeType, Identifier, IdentifierType
from acmekit.protocol.tlsalpn import check_tlsalpn01_certificate
from acmekit_testkit.ports import free_port

CHALLENGE = Challenge(
    "https://ca.test/c", str(ChallengeType.TLS_ALPN_01), ChallengeStatus.PENDING, "t" * 43
)
NAME = Identifier(IdentifierType.DNS, "a.x.test")
IP = Identifier(IdentifierType.IP, "127.0.0.1")


@pytest.fixture
async def solver() -> AsyncIterator[StandaloneTlsAlpnSolver]:
    async with StandaloneTlsAlpnSolver("127.0.0.1", free_port()) as s:
        yield s


async def handshake(port: int, server_name: str) -> tuple[x509.Certificate, str | None]:
    """Connect as a validator does; the certificate shown and the protocol chosen."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([ACME_TLS_ALPN])
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=server_name
    )
    try:
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der), sslobj.selected_alpn_protocol()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_serves_each_names_certificate_by_sni(solver: StandaloneTlsAlpnSolver) -> None:
    other = Identifier(IdentifierType.DNS, "b.x.test")
    await solver.present(NAME, CHALLENGE, "ka")
    await solver.present(other, CHALLENGE, "kb")
    cert, alpn = await handshake(solver.port, "A.x.test")
    assert alpn == ACME_TLS_ALPN
    assert check_tlsalpn01_certificate(cert, NAME, "ka") is None
    cert, _ = await handshake(solver.port, "b.x.test")
    assert check_tlsalpn01_certificate(cert, other, "kb") is None


async def test_ip_identifier_is_found_by_its_reverse_name(solver: StandaloneTlsAlpnSolver) -> None:
    await solver.present(IP, CHALLENGE, "kip")
    cert, _ = await handshake(solver.port, "1.0.0.127.in-addr.arpa")
    assert check_tlsalpn01_certificate(cert, IP, "kip") is None


async def test_unknown_and_cleaned_up_names_are_refused(solver: StandaloneTlsAlpnSolver) -> None:
    await solver.present(NAME, CHALLENGE, "ka")
    with pytest.raises(OSError):  # the unrecognized_name alert, or the reset that follows it
        await handshake(solver.port, "c.x.test")
    await solver.cleanup(NAME, CHALLENGE, "ka")
    assert solver.presented == 0
    with pytest.raises(OSError):  # the unrecognized_name alert, or the reset that follows it
        await handshake(solver.port, "a.x.test")


async def test_shared_name_stays_until_last_cleanup(solver: StandaloneTlsAlpnSolver) -> None:
    await solver.present(NAME, CHALLENGE, "ka")
    await solver.present(NAME, CHALLENGE, "ka")
    await solver.cleanup(NAME, CHALLENGE, "ka")
    cert, _ = await handshake(solver.port, "a.x.test")
    assert check_tlsalpn01_certificate(cert, NAME, "ka") is None


async def test_starts_on_first_present_and_closes() -> None:
    port = free_port()
    solver = StandaloneTlsAlpnSolver("127.0.0.1", port)
    await solver.present(NAME, CHALLENGE, "ka")
    cert, _ = await handshake(port, "a.x.test")
    assert check_tlsalpn01_certificate(cert, NAME, "ka") is None
    await solver.close()
    with pytest.raises(OSError):
        await handshake(port, "a.x.test")

"""A local CA made with `cryptography`, and an in-memory edge, for fleet simulations.

`LocalIssuer` is a real function, not a stand-in for HTTP: for each order it checks the
CSR, signs a real leaf (with AKI, so RFC 9773 certIDs work) under a real root, and keeps
the rules that matter to the fleet: `replaces` may name a certificate at most once, and
during an outage it refuses. What the simulation tests is the planner and the worker's
loop, not ACME on the wire (the component tests do that against our CA).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.fleet.issuer import OrderRequest, OrderStarted
from acmekit.fleet.model import Site


class CaOutage(Exception):
    """The local CA refuses every order for now."""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class LocalIssuer:
    now: Callable[[], datetime]
    lifetime: timedelta = timedelta(days=90)
    name: str = "local-test-ca"
    down: bool = False
    replaced: set[str] = field(default_factory=set)
    issued: list[tuple[str, datetime]] = field(default_factory=list)  # (site id, when)
    # CT logs' keys: each certificate then embeds one SCT per key (RFC 6962 §3.3), over
    # its precertificate as a CA that logs would have made it.
    ct_logs: list[ec.EllipticCurvePrivateKey] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        start = self.now() - timedelta(days=1)
        self.root = (
            x509.CertificateBuilder()
            .subject_name(_name("fleet test root"))
            .issuer_name(_name("fleet test root"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    async def issue(self, request: OrderRequest, started: OrderStarted) -> str:
        if self.down:
            raise CaOutage("the local CA is down")
        if request.replaces is not None:
            assert request.replaces not in self.replaced, "a certificate replaced twice"
            self.replaced.add(request.replaces)
        csr = x509.load_der_x509_csr(request.csr_der)
        assert csr.is_signature_valid
        now = self.now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.root.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + self.lifetime)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in request.site.names]),
                critical=False,
            )
            .add_extension(self._aki, critical=False)
        )
        if self.ct_logs:
            builder = self._logged(builder, int(now.timestamp() * 1000))
        leaf = builder.sign(self.key, hashes.SHA256())
        self.issued.append((request.site.id, now))
        return (leaf.public_bytes(serialization.Encoding.PEM) + self.root_pem).decode()

    def _logged(self, builder: x509.CertificateBuilder, stamp: int) -> x509.CertificateBuilder:
        from acmekit.protocol import ct
        from acmekit.protocol.ctpolicy import sct_list_extension
        from acmekit.server.ca import final_builder

        precert = builder.add_extension(x509.PrecertPoison(), critical=True).sign(
            self.key, hashes.SHA256()
        )
        entry = ct.SignedEntry.precert(ct.precert_entry(precert, self.root))
        scts = [ct.sign_sct(key, stamp, entry) for key in self.ct_logs]
        return final_builder(precert, sct_list_extension(scts))


@dataclass
class MemoryEdge:
    """An edge that keeps what it is given in a dict: name -> (fullchain, key)."""

    name: str
    files: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    expiry: dict[str, datetime] = field(default_factory=dict)  # name -> leaf's notAfter
    failing: bool = False

    async def deploy(self, site: Site, fullchain_pem: bytes, key_pem: bytes) -> None:
        if self.failing:
            raise OSError(f"edge {self.name} is unreachable")
        self.files[site.name] = (fullchain_pem, key_pem)
        leaf = x509.load_pem_x509_certificates(fullchain_pem)[0]
        self.expiry[site.name] = leaf.not_valid_after_utc

    async def remove(self, site: Site) -> None:
        if self.failing:
            raise OSError(f"edge {self.name} is unreachable")
        self.files.pop(site.name, None)
        self.expiry.pop(site.name, None)


@dataclass
class HeldEdge(MemoryEdge):
    """An edge whose first deployment while `hold` is set waits for `go`."""

    hold: bool = False
    go: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    async def deploy(self, site: Site, fullchain_pem: bytes, key_pem: bytes) -> None:
        if self.hold and not self.waiting:
            self.waiting += 1
            await self.go.wait()
        await super().deploy(site, fullchain_pem, key_pem)


@dataclass
class FakeClock:
    """A Clock whose sleep moves time forward and returns at once."""

    current: datetime

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=max(0.0, seconds))

    def advance(self, delta: timedelta) -> None:
        self.current += delta

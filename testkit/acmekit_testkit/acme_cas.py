"""One small handle over two ACME CAs, so a client test can run the same flow against both.

    with running_ca("pebble", workdir, dns_server) as ca:      # or "acmekit"
        ca.directory_url   # the ACME directory
        ca.ca_bundle       # what a client trusts for the CA's HTTPS listener
        ca.issuing_root    # what `openssl verify` trusts for the chains it issues
        ca.http_port, ca.tls_port   # where it validates http-01 and tls-alpn-01
        ca.revoked(serial)          # the CA's own view of one certificate

Both CAs ask the given `acmekit dns` for every name. Pebble keeps its chaos on (see
acmekit_testkit.pebble); its revocation status comes from its management API. `acmekit server`
runs as a process; its revocation status comes from its own database (the `revoked_at`
column of `certificates`, keyed by the lowercase hex serial). `eab_keys` (kid -> base64url
HMAC key) makes External Account Binding required on either.
"""

from __future__ import annotations

import json
import sqlite3
import ssl
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.pebble import PebbleHandle, running_pebble
from acmekit_testkit.ports import free_port

CA_KINDS = ("pebble", "acmekit")


@dataclass(frozen=True)
class AcmeCa:
    kind: str  # one of CA_KINDS
    directory_url: str
    ca_bundle: Path
    issuing_root: Path
    http_port: int
    tls_port: int
    dns: DnsServerHandle
    revoked: Callable[[int], bool]  # serial -> revoked?; raises for a serial it never issued


def _pebble_revoked(pebble: PebbleHandle) -> Callable[[int], bool]:
    def revoked(serial: int) -> bool:
        url = f"{pebble.management_url}/cert-status-by-serial/{serial:x}"
        ctx = ssl.create_default_context(cafile=str(pebble.root_ca_path))
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
            status = json.load(resp)["Status"]
        if status not in ("Valid", "Revoked"):
            raise AssertionError(f"pebble reports serial {serial:x} as {status!r}")
        return bool(status == "Revoked")

    return revoked


def _acmekit_revoked(server: ServerHandle) -> Callable[[int], bool]:
    database = server.state_dir / "acmekit.db"

    def revoked(serial: int) -> bool:
        uri = f"{database.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            row = conn.execute(
                "SELECT revoked_at FROM certificates WHERE serial = ? AND pem IS NOT NULL",
                (format(serial, "x"),),
            ).fetchone()
        if row is None:
            raise AssertionError(f"acmekit server has no certificate with serial {serial:x}")
        return row[0] is not None

    return revoked


@contextmanager
def running_pebble_ca(
    workdir: Path, dns: DnsServerHandle, eab_keys: Mapping[str, str] | None = None
) -> Iterator[AcmeCa]:
    http_port, tls_port = free_port(), free_port()
    with running_pebble(
        workdir, dns_port=dns.dns_port, http_port=http_port, tls_port=tls_port, eab_keys=eab_keys
    ) as pebble:
        issuing_root = workdir / "issuing-root.pem"
        issuing_root.write_text(pebble.issuing_root_pem())
        yield AcmeCa(
            kind="pebble",
            directory_url=pebble.directory_url,
            ca_bundle=pebble.root_ca_path,
            issuing_root=issuing_root,
            http_port=http_port,
            tls_port=tls_port,
            dns=dns,
            revoked=_pebble_revoked(pebble),
        )


@contextmanager
def running_acmekit_ca(
    workdir: Path, dns: DnsServerHandle, eab_keys: Mapping[str, str] | None = None
) -> Iterator[AcmeCa]:
    http_port, tls_port = free_port(), free_port()
    # A CRL listener of its own, so that several of these CAs can run side by side.
    settings: dict[str, object] = {"crl": {"listen": f"127.0.0.1:{free_port()}"}}
    if eab_keys:
        settings.update(eab_required=True, eab_keys=dict(eab_keys))
    with running_acmekit_server(
        workdir,
        dns_port=dns.dns_port,
        http01_port=http_port,
        tlsalpn01_port=tls_port,
        settings=settings,
    ) as server:
        yield AcmeCa(
            kind="acmekit",
            directory_url=server.directory_url,
            ca_bundle=server.root_path,
            issuing_root=server.root_path,
            http_port=http_port,
            tls_port=tls_port,
            dns=dns,
            revoked=_acmekit_revoked(server),
        )


@contextmanager
def running_ca(
    kind: str, workdir: Path, dns: DnsServerHandle, eab_keys: Mapping[str, str] | None = None
) -> Iterator[AcmeCa]:
    """The CA named by `kind` (one of CA_KINDS), stopped by its PID when the block ends."""
    runners = {"pebble": running_pebble_ca, "acmekit": running_acmekit_ca}
    with runners[kind](workdir, dns, eab_keys) as ca:
        yield ca

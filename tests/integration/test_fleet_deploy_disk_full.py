"""An edge's disk that fills up under a deployment: the site's directory keeps its old
key and certificate, a pair, never the new key beside the old certificate (which an edge
reloaded for any site, or restarted, would refuse to load, and with it every site).

The edge's directory is a small tmpfs, filled so that the new key fits and the new
chain does not."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.fleet.deploy import DeployError, DirectoryDeployer
from acmekit.fleet.model import ChallengeMethod, DesiredState, Site, SiteState
from acmekit_testkit.tmpfs import fill, small_tmpfs

NAME = "a.disk.test"
PAGE = 4096


def _pair(copies: int) -> tuple[bytes, bytes]:
    """A key and a self-signed certificate for it, the certificate repeated `copies`
    times (a long chain, as far as bytes go)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime(2025, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + timedelta(days=90))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    return pem * copies, key_pem


def _matches(directory: Path) -> bool:
    chain = x509.load_pem_x509_certificates((directory / "fullchain.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "privkey.pem").read_bytes(), None)
    return chain[0].public_key() == key.public_key()


async def test_a_full_disk_leaves_the_old_pair(tmp_path: Path) -> None:
    site = Site(NAME, (NAME,), ChallengeMethod.HTTP_01, DesiredState.ACTIVE, SiteState.ACTIVE,
                0, None, None, 1, None, None, 0, None, None)  # fmt: skip
    with small_tmpfs(tmp_path / "edge", "1m") as edge:
        deployer = DirectoryDeployer(edge)
        await deployer.deploy(site, *_pair(1))
        assert _matches(edge / NAME)
        chain, key = _pair(20)  # the new chain takes several pages, the key one
        assert len(key) < PAGE < 2 * PAGE < len(chain)
        filler = fill(edge)
        os.truncate(filler, max(0, filler.stat().st_size - 2 * PAGE))  # two pages free
        with pytest.raises(DeployError):
            await deployer.deploy(site, chain, key)
        assert _matches(edge / NAME)
        assert sorted(p.name for p in (edge / NAME).iterdir()) == ["fullchain.pem", "privkey.pem"]
        filler.unlink()
        await deployer.deploy(site, chain, key)
        assert _matches(edge / NAME)
        assert (edge / NAME / "fullchain.pem").read_bytes() == chain

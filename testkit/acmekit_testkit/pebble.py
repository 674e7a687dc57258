"""Run Debian's Pebble (Let's Encrypt's test CA) on loopback for a test or a benchmark.

`running_pebble(...)` writes a listener certificate (a fresh root plus a leaf for
localhost and 127.0.0.1) and a config into `tmp_path`, starts /usr/bin/pebble, waits
until its directory answers, and stops it by PID on exit. Chaos stays on unless the
caller's `env` says otherwise; only the validation sleep is shortened.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import logged_process, wait_https

PEBBLE = "/usr/bin/pebble"
# PEBBLE_VA_SLEEPTIME=1 makes the random pre-validation sleep 0..0 s; everything else
# (nonce rejection, authorization reuse, triple validation) keeps Pebble's defaults.
DEFAULT_ENV = {"PEBBLE_VA_SLEEPTIME": "1"}


@dataclass(frozen=True)
class PebbleHandle:
    directory_url: str
    management_url: str
    root_ca_path: Path  # the root that Pebble's HTTPS listeners chain to
    pid: int

    def _get(self, path: str) -> str:
        ctx = ssl.create_default_context(cafile=str(self.root_ca_path))
        with urllib.request.urlopen(self.management_url + path, context=ctx, timeout=10) as r:
            body: bytes = r.read()
            return body.decode()

    def issuing_root_pem(self) -> str:
        """The root Pebble issues under (new at every start): management /roots/0."""
        return self._get("/roots/0")

    def root_pem(self, index: int) -> str:
        """Root `index`; with PEBBLE_ALTERNATE_ROOTS=N there are N+1 of them."""
        return self._get(f"/roots/{index}")

    def intermediate_pem(self) -> str:
        return self._get("/intermediates/0")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_listener_certs(directory: Path) -> tuple[Path, ...]:
    """A root and a localhost/127.0.0.1 leaf; returns (root, cert, key) paths."""
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("test listener root"))
        .issuer_name(_name("test listener root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(san, critical=False)
        .sign(root_key, hashes.SHA256())
    )
    paths = tuple(directory / n for n in ("listener-root.pem", "listener.pem", "listener.key"))
    paths[0].write_bytes(root.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    paths[2].write_bytes(key_pem)
    paths[2].chmod(0o600)
    return paths


def write_pebble_config(
    directory: Path,
    *,
    listen: str,
    management: str,
    http_port: int,
    tls_port: int,
    eab_keys: Mapping[str, str] | None = None,
) -> tuple[Path, Path]:
    """Listener certificates and a Pebble config in `directory`, Pebble's HTTPS listeners on
    `listen` and `management` (HOST:PORT); returns (the listener root, the config path)."""
    root, cert, key = write_listener_certs(directory)
    config = {
        "pebble": {
            "listenAddress": listen,
            "managementListenAddress": management,
            "certificate": str(cert.resolve()),
            "privateKey": str(key.resolve()),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab_keys),
            "externalAccountMACKeys": dict(eab_keys or {}),
        }
    }
    config_path = (directory / "pebble-config.json").resolve()
    config_path.write_text(json.dumps(config))
    return root, config_path


@contextmanager
def running_pebble(
    tmp_path: Path,
    *,
    dns_port: int | None = None,
    http_port: int,
    tls_port: int,
    env: Mapping[str, str] | None = None,
    eab_keys: Mapping[str, str] | None = None,
) -> Iterator[PebbleHandle]:
    """Run Pebble until the block ends. `eab_keys` (kid -> base64url HMAC key) makes
    External Account Binding required; `dns_port` points its VA at 127.0.0.1:dns_port."""
    listen, mgmt = free_port(), free_port()
    root, config_path = write_pebble_config(
        tmp_path,
        listen=f"127.0.0.1:{listen}",
        management=f"127.0.0.1:{mgmt}",
        http_port=http_port,
        tls_port=tls_port,
        eab_keys=eab_keys,
    )
    argv = [PEBBLE, "-config", str(config_path)]
    if dns_port is not None:
        argv += ["-dnsserver", f"127.0.0.1:{dns_port}"]
    log = tmp_path / "pebble.log"
    with logged_process(argv, log, env={**DEFAULT_ENV, **(env or {})}) as proc:
        directory = f"https://127.0.0.1:{listen}/dir"
        wait_https(proc, directory, root, log, "pebble")
        yield PebbleHandle(directory, f"https://127.0.0.1:{mgmt}", root, proc.pid)

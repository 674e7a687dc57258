"""Shared pieces of the benchmarks: free ports, process CPU, and the peers they start.

Every process started here runs on 127.0.0.1 with ports chosen by binding port 0, is
watched through /proc/PID/stat for its CPU time (utime + stime of the process and all
its descendants), and is stopped by its PID when the `with` block ends.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- ports and CPU time


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free right now for `kind` (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_tcp_udp_port() -> int:
    """A port free for both TCP and UDP, as a DNS server needs."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free for both TCP and UDP")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is field 3, `state`)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and every live descendant, in seconds."""
    total, todo = 0, [pid]
    seen: set[int] = set()
    while todo and len(seen) < 1000:
        current = todo.pop()
        seen.add(current)
        fields = _stat_fields(current)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime
        todo.extend(k for k in _children(current) if k not in seen)
    return total / CLK_TCK


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process we started, by its PID: terminate, then kill if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass(frozen=True)
class Server:
    """An ACME server under test: where its directory is, what to trust, whose CPU to read."""

    name: str
    directory_url: str
    root_path: Path
    pid: int


# ---------------------------------------------------------------- challenge DNS server


def _dns_answers(port: int) -> bool:
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ready\x04test\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.5)
        try:
            udp.sendto(query, ("127.0.0.1", port))
            return udp.recv(512)[:2] == query[:2]
        except OSError:
            return False


@contextmanager
def running_challtestsrv(workdir: Path) -> Iterator[int]:
    """pebble-challtestsrv answering every name with 127.0.0.1; yields its DNS port."""
    dns_port, mgmt = free_tcp_udp_port(), free_port()
    argv = [
        CHALLTESTSRV,
        "-dns01", f"127.0.0.1:{dns_port}",
        "-management", f"127.0.0.1:{mgmt}",
        "-http01", "", "-https01", "", "-tlsalpn01", "",
        "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
    ]  # fmt: skip
    log = workdir / "challtestsrv.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _dns_answers(dns_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"challtestsrv not ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield dns_port
    finally:
        stop_process(proc)


# ---------------------------------------------------------------- acmekit server


def _announced(log: Path) -> dict[str, str]:
    text = log.read_text() if log.exists() else ""
    pairs = (line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return {k: v for k, v in pairs if k in ("directory", "root")}


@contextmanager
def running_acmekit(workdir: Path, *, dns_port: int, http_port: int) -> Iterator[Server]:
    """`acmekit server` with a fresh state dir; ready once it prints directory and root."""
    state = workdir / "acmekit-state"
    # One load generator issues hundreds of certificates under one registered domain
    # from one address: Let's Encrypt-sized rate limits would refuse it (Pebble has none).
    config = workdir / "acmekit.toml"
    config.write_text("[rate_limits]\nenabled = false\n")
    argv = [
        str(Path(sys.executable).with_name("acmekit")), "server",
        "--listen", f"127.0.0.1:{free_port()}",
        "--state-dir", str(state),
        "--dns-resolver", f"127.0.0.1:{dns_port}",
        "--http01-port", str(http_port),
        "--tlsalpn01-port", str(free_port()),
        "--crl-listen", f"127.0.0.1:{free_port()}",
        "--config", str(config),
    ]  # fmt: skip
    log = workdir / "acmekit.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        found = _announced(log)
        while len(found) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"acmekit server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
            found = _announced(log)
        _wait_https(found["directory"], Path(found["root"]), proc)
        yield Server("acmekit", found["directory"], Path(found["root"]), proc.pid)
    finally:
        stop_process(proc)


def _wait_https(url: str, cafile: Path, proc: subprocess.Popen[bytes]) -> None:
    ctx = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


# ---------------------------------------------------------------- Pebble


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def write_listener_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A small root and a localhost/127.0.0.1 leaf for Pebble's HTTPS listener:
    returns (root, cert, key) paths."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        _cert("bench listener root", _name("bench listener root"), root_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    leaf = (
        _cert("localhost", root.subject, leaf_key)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    paths = tuple(directory / n for n in ("listener-root.pem", "listener.pem", "listener.key"))
    paths[0].write_bytes(root.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    paths[2].write_bytes(key_pem)
    paths[2].chmod(0o600)
    return paths[0], paths[1], paths[2]


@contextmanager
def running_pebble(
    workdir: Path, *, dns_port: int, http_port: int, env: Mapping[str, str]
) -> Iterator[Server]:
    """Debian's Pebble with its VA pointed at 127.0.0.1:dns_port and `env` on top."""
    root, cert, key = write_listener_certs(workdir)
    listen = free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{listen}",
            "managementListenAddress": f"127.0.0.1:{free_port()}",
            "certificate": str(cert.resolve()),
            "privateKey": str(key.resolve()),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    config_path = (workdir / "pebble-config.json").resolve()
    config_path.write_text(json.dumps(config))
    argv = [PEBBLE, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns_port}"]
    log = workdir / "pebble.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        directory = f"https://127.0.0.1:{listen}/dir"
        _wait_https(directory, root, proc)
        yield Server("pebble", directory, root, proc.pid)
    finally:
        stop_process(proc)

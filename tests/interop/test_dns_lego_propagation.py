"""lego's dns-01 propagation check, really run, against `acmekit dns`.

lego (Debian's 4.9) checks that a TXT record has propagated by finding the zone's NS host
through its `--dns.resolvers`, resolving that host's address through the *system* resolver
and asking it, on port 53, for the record. On a loopback shared with other tests neither
port 53 nor the system resolver is ours, so everything here runs in a network namespace of
its own: `acmekit dns` on 127.0.0.1:53 is at once the namespace's system resolver (its
resolv.conf), the resolver given to lego and to Pebble, and the zone's authority, whose NS
host `ns1.wild.test` resolves to 127.0.0.1. lego runs its `exec` provider with a hook that
calls our HTTP API, and without `--dns.disable-cp`.

The hook publishes each TXT value a few seconds after lego asks for it, so lego's first
checks find nothing and it must say that it waits; with the check disabled it never would.
A second test hands out an NS address where nothing listens: lego then gives up on
propagation even though the record is there for Pebble to validate.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit_testkit.dnsserver import read_banner
from acmekit_testkit.netns import NetNs, network_namespace
from acmekit_testkit.pebble import PEBBLE, write_pebble_config
from acmekit_testkit.processes import stop_process, wait_ready

pytestmark = pytest.mark.interop

ZONE = "wild.test"
NAMES = {ZONE, f"*.{ZONE}"}
LOOPBACK = "127.0.0.1"
# The namespace is new for every test, so its well-known ports are free.
DNS_LISTEN = f"{LOOPBACK}:53"
DNS_API = f"{LOOPBACK}:8055"
PEBBLE_LISTEN = f"{LOOPBACK}:14000"
PEBBLE_MANAGEMENT = f"{LOOPBACK}:15000"
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
PUBLISH_DELAY = 3.0  # seconds between lego's `present` and the record appearing
CHECKING = "acme: Checking DNS record propagation using [127.0.0.1:53]"
WAITING = "acme: Waiting for DNS record propagation."


@dataclass(frozen=True)
class Peers:
    ns: NetNs
    directory_url: str
    listener_root: Path  # what Pebble's HTTPS listeners chain to
    api_url: str  # `acmekit dns`'s HTTP API, reachable only inside the namespace

    def fetch(self, url: str) -> str:
        """GET an HTTPS URL of Pebble's from inside the namespace."""
        argv = ["curl", "--silent", "--show-error", "--fail", "--noproxy", "*"]
        done = self.ns.run(
            [*argv, "--cacert", str(self.listener_root), url], capture_output=True, timeout=10
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()


@contextmanager
def _acmekit_dns(ns: NetNs, tmp_path: Path, extra: tuple[str, ...]) -> Iterator[str]:
    argv = [sys.executable, "-m", "acmekit", "dns", "--listen", DNS_LISTEN, "--api", DNS_API]
    argv += ["--default-ipv4", LOOPBACK, "--zone", ZONE, *extra]
    log = tmp_path / "acmekit-dns.log"
    with log.open("wb") as err:
        proc = ns.popen(argv, stdout=subprocess.PIPE, stderr=err, env={"PYTHONUNBUFFERED": "1"})
    try:
        banner = read_banner(proc, log)
        assert banner == f"dns: udp+tcp {DNS_LISTEN}, api http://{DNS_API}"
        yield f"http://{DNS_API}"
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def _pebble(ns: NetNs, tmp_path: Path) -> Iterator[Path]:
    root, config_path = write_pebble_config(
        tmp_path, listen=PEBBLE_LISTEN, management=PEBBLE_MANAGEMENT, http_port=5002, tls_port=5001
    )
    log = tmp_path / "pebble.log"
    argv = [PEBBLE, "-config", str(config_path), "-dnsserver", DNS_LISTEN]
    with log.open("wb") as out:
        proc = ns.popen(argv, stdout=out, stderr=subprocess.STDOUT, env=PEBBLE_ENV)
    probe = ["curl", "--silent", "--fail", "--noproxy", "*", "--cacert", str(root)]

    def answers() -> bool:
        return ns.run([*probe, f"https://{PEBBLE_LISTEN}/dir"], capture_output=True).returncode == 0

    try:
        wait_ready(proc, answers, log, "pebble", interval=0.1)
        yield root
    finally:
        stop_process(proc)


@contextmanager
def namespaced_peers(tmp_path: Path, *dns_args: str) -> Iterator[Peers]:
    """A new namespace running `acmekit dns` on port 53 and Pebble validating against it."""
    with ExitStack() as stack:
        ns = stack.enter_context(network_namespace())
        # What runs inside sees our resolv.conf, not the machine's.
        seen = ns.run(["cat", "/etc/resolv.conf"], capture_output=True, timeout=10)
        assert seen.stdout.decode() == f"nameserver {LOOPBACK}\n", seen
        api_url = stack.enter_context(_acmekit_dns(ns, tmp_path, dns_args))
        root = stack.enter_context(_pebble(ns, tmp_path))
        yield Peers(ns, f"https://{PEBBLE_LISTEN}/dir", root, api_url)


HOOK = """\
#!{python}
import json, os, sys, time, urllib.request


def post(path, doc):
    req = urllib.request.Request(
        "{api}" + path,
        data=json.dumps(doc).encode(),
        headers={{"Content-Type": "application/json"}},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).read()


action, fqdn, value = sys.argv[1:4]
if action != "present":
    post("/clear-txt", {{"host": fqdn}})
elif os.fork() == 0:
    # Publish late, from a child that lets go of lego's output pipe so that lego goes on
    # at once: its first propagation checks must then find no record.
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        time.sleep({delay})
        post("/set-txt", {{"host": fqdn, "value": value}})
    finally:
        os._exit(0)
"""


def write_hook(tmp_path: Path, api_url: str, delay: float) -> Path:
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK.format(python=sys.executable, api=api_url, delay=delay))
    hook.chmod(0o755)
    return hook


def run_lego(peers: Peers, tmp_path: Path, propagation_timeout: int) -> tuple[int, str]:
    """lego's dns-01 `exec` provider for NAMES, WITHOUT --dns.disable-cp; (exit code, log)."""
    env = {
        "LEGO_CA_CERTIFICATES": str(peers.listener_root),
        "EXEC_PATH": str(write_hook(tmp_path, peers.api_url, PUBLISH_DELAY)),
        "EXEC_SEQUENCE_INTERVAL": "1",
        "EXEC_PROPAGATION_TIMEOUT": str(propagation_timeout),
        "EXEC_POLLING_INTERVAL": "1",
    }
    argv = [
        "/usr/bin/lego", "--server", peers.directory_url, "--accept-tos",
        "--email", f"a@{ZONE}", "--path", str(tmp_path / "lego"), "--key-type", "ec256",
        "--domains", ZONE, "--domains", f"*.{ZONE}",
        "--dns", "exec", "--dns.resolvers", DNS_LISTEN, "run",
    ]  # fmt: skip
    log = tmp_path / "lego.out"
    with log.open("wb") as out:
        done = peers.ns.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=240)
    return done.returncode, log.read_text()


def lego_certificate(tmp_path: Path) -> Path | None:
    for name in (f"_.{ZONE}", ZONE):
        path = tmp_path / "lego" / "certificates" / f"{name}.crt"
        if path.exists():
            return path
    return None


def test_lego_waits_for_propagation_to_acmekit_dns_then_gets_a_wildcard(tmp_path: Path) -> None:
    with namespaced_peers(tmp_path) as peers:
        code, log = run_lego(peers, tmp_path, propagation_timeout=30)
        assert code == 0, log[-4000:]
        issuing_root = x509.load_pem_x509_certificate(
            peers.fetch(f"https://{PEBBLE_MANAGEMENT}/roots/0").encode()
        )

    # Both challenges went through the check, and both times it found no record at first.
    for domain in sorted(NAMES):
        assert f"[{domain}] {CHECKING}" in log, log[-4000:]
        assert f"[{domain}] {WAITING}" in log, log[-4000:]

    cert = lego_certificate(tmp_path)
    assert cert is not None, log[-4000:]
    chain = x509.load_pem_x509_certificates(cert.read_bytes())
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert set(san.value.get_values_for_type(x509.DNSName)) == NAMES
    assert isinstance(chain[0].public_key(), ec.EllipticCurvePublicKey)
    for child, parent in zip(chain, [*chain[1:], issuing_root], strict=True):
        child.verify_directly_issued_by(parent)


def test_lego_gives_up_when_the_zones_ns_host_does_not_answer(tmp_path: Path) -> None:
    # ns1.wild.test now resolves to 127.0.0.9, where nothing listens in the namespace; the
    # record itself is still served on 127.0.0.1:53, where Pebble would find it.
    with namespaced_peers(tmp_path, "--ns-ipv4", "127.0.0.9") as peers:
        code, log = run_lego(peers, tmp_path, propagation_timeout=6)

    assert code != 0, log[-4000:]
    assert f"[{ZONE}] {CHECKING}" in log, log[-4000:]
    assert "time limit exceeded" in log, log[-4000:]
    assert "127.0.0.9:53" in log, log[-4000:]
    assert lego_certificate(tmp_path) is None

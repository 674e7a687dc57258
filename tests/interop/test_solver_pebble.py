"""Every solver of the client issuing real certificates from Pebble, chaos left on.

One Pebble and one `acmekit dns` (a subprocess with a TSIG key; Pebble's VA resolves
through it, and it answers every name with 127.0.0.1) serve this module. http-01 files
are served from a directory by a tiny aiohttp server on Pebble's httpPort; the
tls-alpn-01 solver listens on its tlsPort.
"""

from __future__ import annotations

import base64
import shlex
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Client
from acmekit.client.solvers import Solver
from acmekit.client.solvers.dns01 import Dns01Solver
from acmekit.client.solvers.dnshook import HookDnsProvider
from acmekit.client.solvers.manual import ManualSolver
from acmekit.client.solvers.rfc2136 import Rfc2136DnsProvider
from acmekit.client.solvers.tlsalpn import StandaloneTlsAlpnSolver
from acmekit.client.solvers.webroot import WebrootSolver
from acmekit.protocol.messages import ChallengeType, OrderStatus
from acmekit_testkit.csr import leaf_names, make_csr
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.pebble import PebbleHandle, running_pebble
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop

SECRET = base64.b64encode(b"pebble solver tests TSIG secret!").decode()
KEY_NAME = "pebble-update."
ROOT = web.AppKey("root", Path)
# A tiny DNS hook in lego's exec shape: `hook API_URL present|cleanup FQDN VALUE`.
API_HOOK = """\
import json, sys, urllib.request
api, action, fqdn, value = sys.argv[1:5]
path, doc = ("/set-txt", {"host": fqdn, "value": value}) if action == "present" else (
    "/clear-txt", {"host": fqdn})
req = urllib.request.Request(api + path, data=json.dumps(doc).encode(), method="POST")
urllib.request.urlopen(req, timeout=10).read()
print(action, fqdn)
"""


class Stack:
    def __init__(
        self, pebble: PebbleHandle, dns: DnsServerHandle, ports: Mapping[str, int], tmp: Path
    ) -> None:
        self.pebble = pebble
        self.dns = dns
        self.http_port = ports["http"]
        self.tls_port = ports["tls"]
        self.hook = tmp / "dns_api_hook.py"
        self.hook.write_text(API_HOOK)

    @property
    def resolver(self) -> tuple[str, int]:
        return (self.dns.host, self.dns.dns_port)

    def hook_command(self) -> str:
        return shlex.join([sys.executable, str(self.hook), self.dns.api_url])

    async def issue(self, solvers: Mapping[ChallengeType, Solver], *names: str) -> None:
        _, csr = make_csr(*names)
        key = ec.generate_private_key(ec.SECP256R1())
        async with Client(
            self.pebble.directory_url, key, ca_bundle=str(self.pebble.root_ca_path)
        ) as client:
            await client.register(contact=["mailto:a@x.test"])
            issued = await client.issue(names, solvers, csr)
        assert issued.order.status == OrderStatus.VALID
        assert leaf_names(issued.fullchain_pem) == set(names)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("solvers")
    ports = {"http": free_port(), "tls": free_port()}
    with (
        dns_server_process(tmp, "--tsig-key", f"hmac-sha512:{KEY_NAME}:{SECRET}") as dns,
        running_pebble(
            tmp, dns_port=dns.dns_port, http_port=ports["http"], tls_port=ports["tls"]
        ) as pebble,
    ):
        yield Stack(pebble, dns, ports, tmp)


async def serve_files(request: web.Request) -> web.StreamResponse:
    root = request.app[ROOT]
    path = (root / request.match_info["path"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return web.Response(status=404)
    return web.FileResponse(path)


@pytest.fixture
async def webroot(stack: Stack, tmp_path: Path) -> AsyncIterator[Path]:
    """A directory served over http on Pebble's httpPort, as a web server would."""
    root = (tmp_path / "www").resolve()
    root.mkdir()
    app = web.Application()
    app[ROOT] = root
    app.router.add_get("/{path:.*}", serve_files)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", stack.http_port).start()
    try:
        yield root
    finally:
        await runner.cleanup()


def entries(path: Path) -> list[Path]:
    return sorted(path.rglob("*"))


async def test_webroot(stack: Stack, webroot: Path) -> None:
    solver = WebrootSolver({"a.webroot.test": webroot}, default_root=webroot)
    await stack.issue({ChallengeType.HTTP_01: solver}, "a.webroot.test", "b.webroot.test")
    assert entries(webroot) == []


async def test_tls_alpn_standalone(stack: Stack) -> None:
    async with StandaloneTlsAlpnSolver("127.0.0.1", stack.tls_port) as solver:
        await stack.issue({ChallengeType.TLS_ALPN_01: solver}, "a.alpn.test", "b.alpn.test")
        # Reused across orders, as the http-01 responder is.
        await stack.issue({ChallengeType.TLS_ALPN_01: solver}, "c.alpn.test")
        assert solver.presented == 0


async def test_manual_http01_with_hooks(stack: Stack, webroot: Path, tmp_path: Path) -> None:
    directory = webroot / ".well-known" / "acme-challenge"
    cleaned = tmp_path / "cleaned.log"
    auth = (
        f'mkdir -p {directory} && printf %s "$CERTBOT_VALIDATION"'
        f' > {directory}/"$CERTBOT_TOKEN" && echo "wrote $CERTBOT_DOMAIN"'
    )
    cleanup = f'rm {directory}/"$CERTBOT_TOKEN" && echo "$CERTBOT_AUTH_OUTPUT" >> {cleaned}'
    solver = ManualSolver(auth, cleanup)
    await stack.issue({ChallengeType.HTTP_01: solver}, "a.manual.test", "b.manual.test")
    # Each cleanup hook saw its own auth hook's output.
    lines = [line for line in cleaned.read_text().splitlines() if line]
    assert sorted(lines) == ["wrote a.manual.test", "wrote b.manual.test"]
    assert entries(directory) == []


async def test_manual_dns01_with_hooks(stack: Stack) -> None:
    hook = stack.hook_command()
    auth = f'{hook} present "_acme-challenge.$CERTBOT_DOMAIN." "$CERTBOT_VALIDATION"'
    cleanup = f'{hook} cleanup "_acme-challenge.$CERTBOT_DOMAIN." "$CERTBOT_VALIDATION"'
    solver = ManualSolver(auth, cleanup)
    await stack.issue({ChallengeType.DNS_01: solver}, "mdns.test", "*.mdns.test")


async def test_dns01_hook_provider_apex_and_wildcard(stack: Stack) -> None:
    solver = Dns01Solver(
        HookDnsProvider(stack.hook_command()), resolver=stack.resolver, propagation_interval=0.2
    )
    await stack.issue({ChallengeType.DNS_01: solver}, "hook.test", "*.hook.test", "a.hook.test")


def write_ini(stack: Stack, path: Path) -> Path:
    path.write_text(
        f"dns_rfc2136_server = {stack.dns.host}\n"
        f"dns_rfc2136_port = {stack.dns.dns_port}\n"
        f"dns_rfc2136_name = {KEY_NAME}\n"
        f"dns_rfc2136_secret = {SECRET}\n"
        "dns_rfc2136_algorithm = HMAC-SHA512\n"
    )
    path.chmod(0o600)
    return path


async def test_dns01_rfc2136_apex_and_wildcard(stack: Stack, tmp_path: Path) -> None:
    provider = Rfc2136DnsProvider.from_certbot_ini(write_ini(stack, tmp_path / "rfc2136.ini"))
    solver = Dns01Solver(provider, resolver=stack.resolver, propagation_interval=0.2)
    await stack.issue({ChallengeType.DNS_01: solver}, "upd.test", "*.upd.test")


async def test_dns01_cname_delegation(stack: Stack, tmp_path: Path) -> None:
    # _acme-challenge.<name> points into auth.test, the only zone the key is used for.
    for name in ("deleg.test", "www.deleg.test"):
        await stack.dns.post(
            "/set-cname", {"host": f"_acme-challenge.{name}.", "target": f"{name}.auth.test."}
        )
    provider = Rfc2136DnsProvider(
        stack.dns.host, stack.dns.dns_port, KEY_NAME, SECRET, "hmac-sha512"
    )
    solver = Dns01Solver(provider, resolver=stack.resolver, propagation_interval=0.2)
    await stack.issue(
        {ChallengeType.DNS_01: solver}, "deleg.test", "*.deleg.test", "www.deleg.test"
    )
    assert await provider.zone_for("deleg.test.auth.test.") == "auth.test."

"""dns-01 over RFC 2136 against BIND 9 (Debian's named), with Pebble validating through it.

named runs in the foreground on a free loopback port, primary for two zones: `bind.test`
(updatable with a TSIG key, `grant KEY zonesub TXT`) and `static.test`, which the key
cannot change and whose `_acme-challenge` names are CNAMEs into `bind.test`: the
delegation of the dns-01 solver. named recurses for loopback clients, but since it is
also the primary for the root zone its recursion never leaves the machine; that is how
Pebble's VA, which asks named, follows the CNAMEs from one zone into the other (an
authoritative-only BIND 9.18 does not chase CNAMEs across zones). The zones' NS host is
127.0.0.1, where nothing listens on port 53, so the solver's propagation check asks named
through the resolver.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Client
from acmekit.client.solvers.dns01 import Dns01Solver
from acmekit.client.solvers.errors import DnsUpdateError
from acmekit.client.solvers.rfc2136 import Rfc2136DnsProvider
from acmekit.protocol.messages import ChallengeType, OrderStatus
from acmekit_testkit.bind import Named, running_named
from acmekit_testkit.csr import leaf_names, make_csr
from acmekit_testkit.pebble import PebbleHandle, running_pebble
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop

KEY_NAME = "bind-update"
SECRET = base64.b64encode(b"BIND update key for the solvers!").decode()
ZONE_HEAD = """\
$TTL 60
@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60
@ IN NS ns1.{zone}.
ns1 IN A 127.0.0.1
@ IN A 127.0.0.1
* IN A 127.0.0.1
"""
STATIC_CNAMES = """\
_acme-challenge IN CNAME static.bind.test.
_acme-challenge.www IN CNAME www-static.bind.test.
"""

# named also serves the root, so that its resolver (which Pebble's VA uses, to follow the
# CNAMEs across zones) never looks beyond this machine: other names are NXDOMAIN.
ROOT_ZONE = """\
$TTL 60
. IN SOA ns1.bind.test. hostmaster.bind.test. 1 3600 600 86400 60
. IN NS ns1.bind.test.
"""


def named_conf(tmp: Path, port: int) -> str:
    return f"""
options {{
    directory "{tmp}";
    pid-file "{tmp}/named.pid";
    managed-keys-directory "{tmp}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-recursion {{ 127.0.0.1; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
zone "bind.test" {{
    type primary; file "bind.test.zone";
    update-policy {{ grant {KEY_NAME} zonesub TXT; }};
}};
zone "static.test" {{ type primary; file "static.test.zone"; }};
zone "." {{ type primary; file "root.zone"; }};
"""


def answers(port: int) -> bool:
    query = dns.message.make_query("bind.test.", "SOA")
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return False
    return bool(reply.answer)


@pytest.fixture(scope="module")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Named]:
    zones = {
        "bind.test.zone": ZONE_HEAD.format(zone="bind.test"),
        "static.test.zone": ZONE_HEAD.format(zone="static.test") + STATIC_CNAMES,
        "root.zone": ROOT_ZONE,
    }
    tmp = tmp_path_factory.mktemp("bind").resolve()
    with running_named(tmp, named_conf, zones, ready=answers) as named:
        yield named


@pytest.fixture(scope="module")
def pebble(bind: Named, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PebbleHandle]:
    tmp = tmp_path_factory.mktemp("pebble-bind")
    with running_pebble(
        tmp, dns_port=bind.port, http_port=free_port(), tls_port=free_port()
    ) as handle:
        yield handle


def provider(bind: Named, tmp_path: Path) -> Rfc2136DnsProvider:
    ini = tmp_path / "rfc2136.ini"
    ini.write_text(
        "dns_rfc2136_server = 127.0.0.1\n"
        f"dns_rfc2136_port = {bind.port}\n"
        f"dns_rfc2136_name = {KEY_NAME}\n"
        f"dns_rfc2136_secret = {SECRET}\n"
        "dns_rfc2136_algorithm = HMAC-SHA256\n"
    )
    ini.chmod(0o600)
    return Rfc2136DnsProvider.from_certbot_ini(ini)


async def issue(pebble: PebbleHandle, solver: Dns01Solver, *names: str) -> None:
    _, csr = make_csr(*names)
    key = ec.generate_private_key(ec.SECP256R1())
    async with Client(pebble.directory_url, key, ca_bundle=str(pebble.root_ca_path)) as client:
        await client.register(contact=["mailto:a@x.test"])
        issued = await client.issue(names, {ChallengeType.DNS_01: solver}, csr)
    assert issued.order.status == OrderStatus.VALID
    assert leaf_names(issued.fullchain_pem) == set(names)


async def test_apex_and_wildcard_through_bind(
    bind: Named, pebble: PebbleHandle, tmp_path: Path
) -> None:
    solver = Dns01Solver(
        provider(bind, tmp_path), resolver=("127.0.0.1", bind.port), propagation_interval=0.2
    )
    await issue(pebble, solver, "bind.test", "*.bind.test", "a.bind.test")


async def test_cname_delegation_into_the_updatable_zone(
    bind: Named, pebble: PebbleHandle, tmp_path: Path
) -> None:
    updater = provider(bind, tmp_path)
    solver = Dns01Solver(updater, resolver=("127.0.0.1", bind.port), propagation_interval=0.2)
    await issue(pebble, solver, "static.test", "*.static.test", "www.static.test")
    assert await updater.zone_for("www-static.bind.test.") == "bind.test."


async def test_bind_refuses_updates_outside_the_policy(bind: Named, tmp_path: Path) -> None:
    updater = provider(bind, tmp_path)
    # Without CNAME following the record would land in static.test, which the key may not touch.
    with pytest.raises(DnsUpdateError, match="REFUSED"):
        await updater.add_txt("_acme-challenge.other.static.test.", "value")

"""dns-account-01 and dns-persist-01 published over RFC 2136 into BIND 9 (Debian's
named), our CA (in-process) validating through named, our client solving.

dns-account-01 goes through the same Rfc2136DnsProvider as dns-01, at the account's own
label; the dns-persist-01 record is published once through it, then a second order is
validated from the standing record with the provider gone.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

from acmekit.client import Client
from acmekit.client.solvers.accountbound import DnsAccountSolver, DnsPersistSolver
from acmekit.client.solvers.dns01 import Dns01Solver
from acmekit.client.solvers.rfc2136 import Rfc2136DnsProvider
from acmekit.client.transport import AsgiTransport
from acmekit.protocol.messages import ChallengeType
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import new_key
from acmekit_testkit.bind import Named, running_named
from acmekit_testkit.csr import leaf_names, make_csr
from acmekit_testkit.fleet_cas import ca_config

pytestmark = pytest.mark.interop

KEY_NAME = "persist-update"
SECRET = base64.b64encode(b"BIND update key, persist tests!!").decode()
ZONE = """\
$TTL 60
@ IN SOA ns1.persist.test. hostmaster.persist.test. 1 3600 600 86400 60
@ IN NS ns1.persist.test.
ns1 IN A 127.0.0.1
"""
# named serves the root too, so the CA's CAA climb past persist.test gets NXDOMAIN from
# it instead of a refusal (nothing is asked beyond this machine).
ROOT_ZONE = """\
$TTL 60
. IN SOA ns1.persist.test. hostmaster.persist.test. 1 3600 600 86400 60
. IN NS ns1.persist.test.
ns1.persist.test. IN A 127.0.0.1
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
zone "persist.test" {{
    type primary; file "persist.test.zone";
    update-policy {{ grant {KEY_NAME} zonesub TXT; }};
}};
zone "." {{ type primary; file "root.zone"; }};
"""


def answers(port: int) -> bool:
    query = dns.message.make_query("persist.test.", "SOA")
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return False
    return bool(reply.answer)


@pytest.fixture(scope="module")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Named]:
    tmp = tmp_path_factory.mktemp("bind-persist").resolve()
    with running_named(
        tmp, named_conf, {"persist.test.zone": ZONE, "root.zone": ROOT_ZONE}, ready=answers
    ) as named:
        yield named


@pytest.fixture
async def client(bind: Named, tmp_path: Path) -> AsyncIterator[Client]:
    config = replace(
        ca_config(tmp_path, "ca", bind.port),
        dns_persist_01=True,
        dns_account_01=True,
        caa_identities=("ca.persist.test",),
    )
    ca: Assembly = assemble(config)
    try:
        async with Client(
            "https://ca.test/directory", new_key(), transport=AsgiTransport(ca.app)
        ) as c:
            await c.register()
            yield c
    finally:
        await ca.app.close()
        ca.store.engine.dispose()


def dns01(bind: Named, tmp_path: Path, kind: type[Dns01Solver] = Dns01Solver) -> Dns01Solver:
    ini = tmp_path / "rfc2136.ini"
    ini.write_text(
        "dns_rfc2136_server = 127.0.0.1\n"
        f"dns_rfc2136_port = {bind.port}\n"
        f"dns_rfc2136_name = {KEY_NAME}\n"
        f"dns_rfc2136_secret = {SECRET}\n"
        "dns_rfc2136_algorithm = HMAC-SHA256\n"
    )
    ini.chmod(0o600)
    provider = Rfc2136DnsProvider.from_certbot_ini(ini)
    return kind(
        provider,
        resolver=("127.0.0.1", bind.port),
        nameserver_port=bind.port,
        propagation_interval=0.2,
        propagation_timeout=20,
        follow_cname=False,
    )


async def test_dns_account_01_over_rfc2136(client: Client, bind: Named, tmp_path: Path) -> None:
    names = ["acct.persist.test", "*.acct.persist.test"]
    solver = dns01(bind, tmp_path, DnsAccountSolver)
    issued = await client.issue(names, {ChallengeType.DNS_ACCOUNT_01: solver}, make_csr(*names)[1])
    assert leaf_names(issued.fullchain_pem) == set(names)


async def test_dns_persist_01_published_once_over_rfc2136(
    client: Client, bind: Named, tmp_path: Path
) -> None:
    names = ["*.standing.persist.test", "standing.persist.test"]
    publishing = DnsPersistSolver(dns01(bind, tmp_path))
    issued = await client.issue(
        names, {ChallengeType.DNS_PERSIST_01: publishing}, make_csr(*names)[1]
    )
    assert leaf_names(issued.fullchain_pem) == set(names)
    # One record: the wildcard's, with policy=wildcard, serves the apex too.
    (record,) = publishing.records
    assert record.name == "_validation-persist.standing.persist.test"
    assert record.value.endswith("; policy=wildcard")
    # The record stays: fresh authorizations validate from it with no DNS access at all.
    for authz in await client.authorizations(issued.order):
        await client.deactivate_authorization(authz)
    again = await client.issue(
        names, {ChallengeType.DNS_PERSIST_01: DnsPersistSolver()}, make_csr(*names)[1]
    )
    assert leaf_names(again.fullchain_pem) == set(names)

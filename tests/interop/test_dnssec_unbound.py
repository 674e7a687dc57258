"""DNSSEC on the validation authority's lookups, with real parts: BIND serving zones signed
by `dnssec-keygen` and `dnssec-signzone`, Debian's unbound validating in front of it with
the zones' trust anchors, and our CA asking unbound (`--dns-resolver`) with
`[validation] dnssec = "require-validating-resolver"` (acmekit_testkit.dnssec).

Our client publishes its dns-01 records in BIND over RFC 2136 (BIND signs them) and serves
http-01 itself; its propagation check asks BIND directly, so the record is in place before
the CA looks. A signed zone passes dns-01, http-01 and CAA, and the authorization records
that the answers were authenticated (and the challenge's log line says so); an unsigned
one records that they were not; an unsigned one, and an
unsigned delegation below the signed zone, pass; in the zone whose DNSKEY signatures are
broken (and in the one whose signatures expired), dns-01, the CAA check and the address lookups of
http-01 and tls-alpn-01 each end in a `dns` problem, and no certificate is issued. Debian's
certbot, unchanged, gets a wildcard certificate from the signed zone and nothing from the
bogus one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.rdatatype
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Client
from acmekit.client.solvers import Solver
from acmekit.client.solvers.dns01 import Dns01Solver
from acmekit.client.solvers.rfc2136 import Rfc2136DnsProvider
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.client.solvers.tlsalpn import StandaloneTlsAlpnSolver
from acmekit.protocol.messages import ChallengeType, OrderStatus
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.caa import CaaChecker
from acmekit.server.validation.dnssec import (
    DnssecMode,
    ResolverNotValidating,
    probe_validating_resolver,
)
from acmekit.server.validation.resolve import DnsClient
from acmekit_testkit.acmekit_server import (
    CaProcess,
    running_acmekit_server,
    validation_flags,
)
from acmekit_testkit.cli import certbot_rfc2136
from acmekit_testkit.csr import leaf_names, make_csr
from acmekit_testkit.dnssec import (
    BOGUS,
    DNSSEC_SETTINGS,
    DnssecDns,
    recorded_dnssec,
    write_rfc2136_ini,
)
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

pytestmark = pytest.mark.interop

REQUIRE = DnssecMode.REQUIRE_VALIDATING_RESOLVER
ACCOUNT_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def dnssec_ca(
    tmp_path_factory: pytest.TempPathFactory, dnssec_dns: DnssecDns
) -> Iterator[CaProcess[DnssecDns]]:
    http01, tlsalpn01 = free_port(), free_port()
    with running_acmekit_server(
        tmp_path_factory.mktemp("dnssec-ca"),
        dns_port=dnssec_dns.resolver_port,
        http01_port=http01,
        tlsalpn01_port=tlsalpn01,
        settings=DNSSEC_SETTINGS,
    ) as server:
        yield CaProcess(server, dnssec_dns, http01, tlsalpn01)


def dns01_solver(peers: DnssecDns, tmp_path: Path) -> Dns01Solver:
    ini = write_rfc2136_ini(tmp_path / "rfc2136.ini", peers.named.port)
    return Dns01Solver(
        Rfc2136DnsProvider.from_certbot_ini(ini),
        resolver=("127.0.0.1", peers.named.port),
        nameserver_port=peers.named.port,
        propagation_interval=0.2,
        propagation_timeout=20,
    )


async def issue(ca: CaProcess[DnssecDns], ctype: ChallengeType, solver: Solver, name: str) -> str:
    """Ask our CA for a certificate for `name`, solving `ctype`; the full chain's PEM."""
    _, csr = make_csr(name)
    root = str(ca.server.root_path)
    # One account for all (the CA's limit on new accounts per address is 10 in 3 hours).
    async with Client(ca.server.directory_url, ACCOUNT_KEY, ca_bundle=root) as client:
        await client.register(contact=["mailto:a@x.test"])
        issued = await client.issue([name], {ctype: solver}, csr)
    assert issued.order.status == OrderStatus.VALID
    chain: str = issued.fullchain_pem
    return chain


async def refused(ca: CaProcess[DnssecDns], ctype: ChallengeType, solver: Solver, name: str) -> str:
    """The detail of the `dns` problem that ends the authorization of `name`."""
    with pytest.raises(AcmeError) as info:
        await issue(ca, ctype, solver, name)
    err = info.value.problem
    assert err.type == ProblemType.DNS, err
    assert len(err.subproblems) == 1
    sub = err.subproblems[0]
    assert sub.type == ProblemType.DNS
    detail: str = sub.detail
    return detail


def ca_log(ca: CaProcess[DnssecDns]) -> str:
    return ca.server.log.read_text(errors="replace")


# --- through the CA: our client against our CA asking unbound


async def test_signed_zone_passes_dns01_and_caa(
    dnssec_ca: CaProcess[DnssecDns], tmp_path: Path
) -> None:
    chain = await issue(
        dnssec_ca, ChallengeType.DNS_01, dns01_solver(dnssec_ca.dns, tmp_path), "a.secure.test"
    )
    assert leaf_names(chain) == {"a.secure.test"}
    log = ca_log(dnssec_ca)
    assert "DNSSEC: TXT _acme-challenge.a.secure.test answer is secure (AD)" in log
    assert "DNSSEC: CAA a.secure.test answer is secure (AD)" in log
    assert recorded_dnssec(dnssec_ca.server.state_dir, "a.secure.test") == [(True, True)]
    assert re.search(
        r"dns-01 for a.secure.test \(account [^)]+\): valid; DNSSEC dcv secure, caa secure", log
    )


async def test_signed_zone_passes_http01(dnssec_ca: CaProcess[DnssecDns]) -> None:
    async with StandaloneHttpSolver("127.0.0.1", dnssec_ca.http01_port) as solver:
        chain = await issue(dnssec_ca, ChallengeType.HTTP_01, solver, "web.secure.test")
    assert leaf_names(chain) == {"web.secure.test"}
    assert "DNSSEC: A web.secure.test answer is secure (AD)" in ca_log(dnssec_ca)
    assert recorded_dnssec(dnssec_ca.server.state_dir, "web.secure.test") == [(True, True)]


async def test_unsigned_zone_passes(dnssec_ca: CaProcess[DnssecDns], tmp_path: Path) -> None:
    chain = await issue(
        dnssec_ca, ChallengeType.DNS_01, dns01_solver(dnssec_ca.dns, tmp_path), "a.insecure.test"
    )
    assert leaf_names(chain) == {"a.insecure.test"}
    log = ca_log(dnssec_ca)
    assert "DNSSEC: TXT _acme-challenge.a.insecure.test answer is not authenticated" in log
    assert recorded_dnssec(dnssec_ca.server.state_dir, "a.insecure.test") == [(False, False)]
    assert re.search(
        r"a.insecure.test \(account [^)]+\): valid; DNSSEC dcv insecure, caa insecure", log
    )


async def test_unsigned_delegation_from_a_signed_zone_passes(
    dnssec_ca: CaProcess[DnssecDns], tmp_path: Path
) -> None:
    # plain.secure.test has no DS in secure.test: provably insecure, so it validates.
    chain = await issue(
        dnssec_ca,
        ChallengeType.DNS_01,
        dns01_solver(dnssec_ca.dns, tmp_path),
        "a.plain.secure.test",
    )
    assert leaf_names(chain) == {"a.plain.secure.test"}
    log = ca_log(dnssec_ca)
    assert "DNSSEC: TXT _acme-challenge.a.plain.secure.test answer is not authenticated" in log
    # Its CAA set is the signed parent's.
    assert "DNSSEC: CAA secure.test answer is secure (AD)" in log
    # ...but the CAA answers for the names below the unsigned delegation were not signed.
    assert recorded_dnssec(dnssec_ca.server.state_dir, "a.plain.secure.test") == [(False, False)]


async def test_broken_signature_fails_dns01(
    dnssec_ca: CaProcess[DnssecDns], tmp_path: Path
) -> None:
    solver = dns01_solver(dnssec_ca.dns, tmp_path)
    detail = await refused(dnssec_ca, ChallengeType.DNS_01, solver, "a.bogus.test")
    assert re.search(rf"SERVFAIL {BOGUS} looking up TXT for _acme-challenge.a.bogus.test", detail)


async def test_broken_signature_fails_caa(dnssec_ca: CaProcess[DnssecDns], tmp_path: Path) -> None:
    # alias.secure.test's dns-01 record is in the signed zone; its CAA set is reached
    # through a CNAME into the zone whose signatures are broken.
    solver = dns01_solver(dnssec_ca.dns, tmp_path)
    detail = await refused(dnssec_ca, ChallengeType.DNS_01, solver, "alias.secure.test")
    assert "could not check CAA records for alias.secure.test" in detail, detail
    assert re.search(rf"SERVFAIL or REFUSED {BOGUS} looking up CAA at alias.secure.test", detail)
    assert "DNSSEC: TXT _acme-challenge.alias.secure.test answer is secure (AD)" in ca_log(
        dnssec_ca
    )
    # The challenge's answers were authenticated; the CAA lookup gave no answer to count.
    assert recorded_dnssec(dnssec_ca.server.state_dir, "alias.secure.test") == [(True, None)]


async def test_broken_signature_fails_http01_address_lookup(
    dnssec_ca: CaProcess[DnssecDns],
) -> None:
    async with StandaloneHttpSolver("127.0.0.1", dnssec_ca.http01_port) as solver:
        detail = await refused(dnssec_ca, ChallengeType.HTTP_01, solver, "web.bogus.test")
    assert re.search(rf"SERVFAIL {BOGUS} looking up A for web.bogus.test", detail), detail


async def test_expired_signatures_fail_http01_and_caa(
    dnssec_ca: CaProcess[DnssecDns], tmp_path: Path
) -> None:
    async with StandaloneHttpSolver("127.0.0.1", dnssec_ca.http01_port) as solver:
        detail = await refused(dnssec_ca, ChallengeType.HTTP_01, solver, "web.expired.test")
    assert re.search(rf"SERVFAIL {BOGUS} looking up A for web.expired.test", detail), detail
    # dns-01 in the signed zone, CAA reached through a CNAME into the expired one.
    solver2 = dns01_solver(dnssec_ca.dns, tmp_path)
    name = "expired-alias.secure.test"
    detail = await refused(dnssec_ca, ChallengeType.DNS_01, solver2, name)
    assert re.search(rf"could not check CAA records for {name}: .*{BOGUS}", detail), detail


async def test_tls_alpn01_passes_when_signed_and_fails_when_bogus(
    dnssec_ca: CaProcess[DnssecDns],
) -> None:
    port = dnssec_ca.tlsalpn01_port
    async with StandaloneTlsAlpnSolver("127.0.0.1", port) as solver:
        chain = await issue(dnssec_ca, ChallengeType.TLS_ALPN_01, solver, "tls.secure.test")
        detail = await refused(dnssec_ca, ChallengeType.TLS_ALPN_01, solver, "tls.bogus.test")
    assert leaf_names(chain) == {"tls.secure.test"}
    assert re.search(rf"SERVFAIL {BOGUS} looking up A for tls.bogus.test", detail), detail


def test_ca_refuses_to_start_behind_a_resolver_that_does_not_validate(
    dnssec_dns: DnssecDns, tmp_path: Path
) -> None:
    # insecure.test is unsigned: unbound's answer has no AD bit, as a resolver that does
    # not validate would answer for any zone.
    config = tmp_path / "ca.toml"
    config.write_text('[validation]\ndnssec = "require-validating-resolver"\n'
                      'dnssec_probe = "insecure.test"\n')  # fmt: skip
    argv = [
        sys.executable, "-m", "acmekit", "server",
        "--listen", f"127.0.0.1:{free_port()}",
        "--state-dir", str(tmp_path / "state"),
        "--dns-resolver", f"127.0.0.1:{dnssec_dns.resolver_port}",
        "--config", str(config),
        *validation_flags(),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "without the AD bit" in done.stderr, done.stderr
    assert "directory:" not in done.stdout


# --- certbot (Debian's, unchanged) against our CA behind unbound, dns-01 over RFC 2136


def certbot_dns01(
    ca: CaProcess[DnssecDns], tmp_path: Path, *names: str
) -> subprocess.CompletedProcess[str]:
    ini = write_rfc2136_ini(tmp_path / "certbot-rfc2136.ini", ca.dns.named.port)
    return certbot_rfc2136(ca.server, tmp_path, ini, *names)


def test_certbot_gets_a_wildcard_in_the_signed_zone(
    dnssec_ca: CaProcess[DnssecDns], tmp_path: Path
) -> None:
    done = certbot_dns01(dnssec_ca, tmp_path, "w.secure.test", "*.w.secure.test")
    assert done.returncode == 0, done.stderr[-3000:]
    live = tmp_path / "etc" / "live" / "w.secure.test"
    cert = openssl_verify(dnssec_ca.server.root_path, live / "fullchain.pem", tmp_path)
    assert dns_names(cert) == ["*.w.secure.test", "w.secure.test"]
    assert "DNSSEC: TXT _acme-challenge.w.secure.test answer is secure (AD)" in ca_log(dnssec_ca)


def test_certbot_gets_nothing_from_the_bogus_zone(
    dnssec_ca: CaProcess[DnssecDns], tmp_path: Path
) -> None:
    done = certbot_dns01(dnssec_ca, tmp_path, "certbot.bogus.test")
    assert done.returncode != 0
    # certbot prints the challenge's problem (type and detail) among its output.
    said = done.stdout + done.stderr
    assert "Type:   dns" in said, said[-3000:]
    assert re.search(rf"SERVFAIL {BOGUS} looking up TXT for _acme-challenge.certbot.bogus", said)
    assert not (tmp_path / "etc" / "live" / "certbot.bogus.test").exists()


# --- the lookups themselves, against unbound


async def test_lookups_record_whether_answers_were_authenticated(
    dnssec_dns: DnssecDns,
) -> None:
    client = DnsClient(("127.0.0.1", dnssec_dns.resolver_port), 5.0, dnssec=REQUIRE)
    secure = await client.query("x.secure.test", dns.rdatatype.A)
    insecure = await client.query("x.insecure.test", dns.rdatatype.A)
    assert secure.values == insecure.values == ("127.0.0.1",)
    assert secure.authenticated and not insecure.authenticated
    with pytest.raises(AcmeError) as info:
        await client.query("x.bogus.test", dns.rdatatype.A)
    assert info.value.problem.type == ProblemType.DNS
    assert re.search(rf"SERVFAIL {BOGUS} looking up A for x.bogus.test", info.value.problem.detail)


async def test_bogus_caa_is_a_dns_problem_even_with_dnssec_off(dnssec_dns: DnssecDns) -> None:
    # The default mode sends plain questions; the validating resolver's SERVFAIL still
    # refuses issuance, never "no CAA records".
    checker = CaaChecker(("127.0.0.1", dnssec_dns.resolver_port), ["acmekit"])
    with pytest.raises(AcmeError) as info:
        await checker.check("x.bogus.test", wildcard=False, account_uri="a", method="dns-01")
    assert info.value.problem.type == ProblemType.DNS
    assert "could not check CAA records for x.bogus.test" in info.value.problem.detail
    await checker.check("x.secure.test", wildcard=False, account_uri="a", method="dns-01")


async def test_probe_accepts_a_validating_resolver(dnssec_dns: DnssecDns) -> None:
    await probe_validating_resolver(("127.0.0.1", dnssec_dns.resolver_port), "secure.test")
    with pytest.raises(ResolverNotValidating, match="SERVFAIL"):
        await probe_validating_resolver(("127.0.0.1", dnssec_dns.resolver_port), "bogus.test")
    # BIND itself, authoritative, does not validate: no AD bit.
    with pytest.raises(ResolverNotValidating, match="without the AD bit"):
        await probe_validating_resolver(("127.0.0.1", dnssec_dns.named.port), "secure.test")

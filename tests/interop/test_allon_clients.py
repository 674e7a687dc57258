"""certbot and lego (Debian's, unchanged) obtain certificates from one `acmekit server` with
everything on at once: `[validation] dnssec = "require-validating-resolver"` behind a
validating unbound in front of BIND's signed zones (acmekit_testkit.dnssec), `[mpic]` with
three remote perspectives (`acmekit server perspective --dnssec require-validating-resolver`)
and certificate linting (the default, not switched off here).

Each perspective asks its own unbound, not the CA's: remote perspectives exist to look from
elsewhere, with their own resolvers and caches, so one shared resolver (one cache, one
validator) would make three answers one. The four unbounds validate the same zones with the
same trust anchors, all from the one BIND.

lego gets a wildcard by dns-01 through its rfc2136 provider (TSIG, to BIND, which signs the
record); certbot gets a name by dns-01 through its dns-rfc2136 plugin and another by
http-01 (the signed zone's `*` A record is 127.0.0.1). Each test shows that the perspectives
corroborated (the CA's log line, and the answers stored on the authorization), that the
perspectives that passed saw authenticated answers themselves, that the CA recorded the
challenge's and the CAA lookups' answers as authenticated (dnssec_dcv, dnssec_caa), and that
the certificate passes the CA's linter. In the zone whose signatures are broken, lego fails
with the CA's `dns` problem and no certificate is written.

lego never asks the machine's resolver: `--dns.disable-cp` (no propagation check, which
would look up the zone's name servers there) and `--dns.resolvers` at BIND, which it asks
for the zone's SOA only. BIND rather than unbound, so that in the bogus zone lego still finds
the zone and publishes: the CA refuses, not lego.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from acmekit.server.lint import Linter
from acmekit.server.validation.reserved import parse_networks
from acmekit_testkit.acmekit_server import (
    LOOPBACK_NETWORKS,
    TEST_SPECIAL_NAMES,
    ServerHandle,
    recorded_evidence,
    running_acmekit_server,
)
from acmekit_testkit.cli import (
    certbot_rfc2136,
    certbot_standalone,
    lego_certificate,
    run_lego,
)
from acmekit_testkit.dnssec import (
    BOGUS,
    DNSSEC_SETTINGS,
    DnssecDns,
    lego_rfc2136_env,
    recorded_dnssec,
    running_test_zone_resolver,
    write_rfc2136_ini,
)
from acmekit_testkit.perspectives import (
    RIRS,
    PerspectiveHandle,
    corroborated,
    mpic_settings,
    running_perspectives,
)
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

pytestmark = pytest.mark.interop


@dataclass(frozen=True)
class AllOnCa:
    server: ServerHandle
    dns: DnssecDns
    http01_port: int
    perspectives: tuple[PerspectiveHandle, ...]


@pytest.fixture(scope="module")
def allon_ca(tmp_path_factory: pytest.TempPathFactory, dnssec_dns: DnssecDns) -> Iterator[AllOnCa]:
    workdir = tmp_path_factory.mktemp("allon-ca")
    state, http01 = workdir / "ca-state", free_port()
    with ExitStack() as stack:
        resolvers = [
            stack.enter_context(
                running_test_zone_resolver(
                    workdir / f"unbound-{name}", dnssec_dns.named.port, dnssec_dns.zones
                )
            )
            for name in RIRS
        ]
        perspectives = stack.enter_context(
            running_perspectives(
                workdir, state, dns_ports=[r.port for r in resolvers], http01_port=http01,
                dnssec_probe="secure.test",
            )
        )  # fmt: skip
        settings = {
            **DNSSEC_SETTINGS,
            "crl": {"listen": f"127.0.0.1:{free_port()}"},
            "mpic": mpic_settings(perspectives),
        }
        server = stack.enter_context(
            running_acmekit_server(
                workdir, dns_port=dnssec_dns.resolver_port, http01_port=http01, state_dir=state,
                settings=settings,
            )
        )  # fmt: skip
        yield AllOnCa(server, dnssec_dns, http01, perspectives)


def lego_dns01(ca: AllOnCa, base: Path, *names: str) -> tuple[int, str]:
    """lego's rfc2136 provider for `names`; (exit code, what it printed)."""
    done = run_lego(
        ca.server, base, names, "--dns", "rfc2136", "--dns.disable-cp",
        "--dns.resolvers", f"127.0.0.1:{ca.dns.named.port}",
        env=lego_rfc2136_env(ca.dns.named.port),
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def issued_names(ca: AllOnCa, chain: Path, base: Path) -> list[str]:
    """The names of the certificate in `chain`, after openssl verified the chain up to the
    CA's root and the certificate passed the linter the CA runs before signing (configured
    as the CA is here: the test names and loopback addresses allowed)."""
    cert = openssl_verify(ca.server.root_path, chain, base)
    networks = parse_networks(LOOPBACK_NETWORKS)
    linter = Linter(allowed_names=TEST_SPECIAL_NAMES, allowed_networks=networks)
    report = linter.lint(cert.public_bytes(Encoding.DER))
    assert not report.errors, report.errors
    return dns_names(cert)


def assert_all_on(ca: AllOnCa, name: str, records: tuple[str, ...], authorizations: int) -> None:
    """The `authorizations` for `name` were corroborated by the perspectives, each of which
    that passed logged the `records` (e.g. `TXT _acme-challenge.NAME`) as authenticated;
    the CA recorded its own answers as authenticated."""
    assert corroborated(ca.server.log, name), ca.server.log.read_text()[-3000:]
    evidence = recorded_evidence(ca.server.state_dir, name)
    assert len(evidence) == authorizations
    assert recorded_dnssec(ca.server.state_dir, name) == [(True, True)] * authorizations
    logs = {p.name: p.log.read_text(errors="replace") for p in ca.perspectives}
    for each in evidence:
        assert each.mpic_perspectives is not None
        passed = [a["name"] for a in each.mpic_perspectives if a["outcome"] == "passed"]
        # Three remotes: the quorum is two, from two RIRs (BR 3.2.2.9).
        assert len(passed) >= 2, each
        for perspective in passed:
            for record in records:
                assert f"DNSSEC: {record} answer is secure (AD)" in logs[perspective], record


def test_lego_gets_a_wildcard_in_the_signed_zone(allon_ca: AllOnCa, tmp_path: Path) -> None:
    code, said = lego_dns01(allon_ca, tmp_path, "lw.secure.test", "*.lw.secure.test")
    assert code == 0, said[-3000:]
    crt = lego_certificate(tmp_path, "lw.secure.test")
    assert issued_names(allon_ca, crt, tmp_path) == ["*.lw.secure.test", "lw.secure.test"]
    # Two authorizations (the name and its wildcard), one TXT record name for both.
    records = ("TXT _acme-challenge.lw.secure.test", "CAA secure.test")
    assert_all_on(allon_ca, "lw.secure.test", records, authorizations=2)


def test_certbot_gets_a_name_by_dns01_in_the_signed_zone(allon_ca: AllOnCa, tmp_path: Path) -> None:
    ini = write_rfc2136_ini(tmp_path / "rfc2136.ini", allon_ca.dns.named.port)
    done = certbot_rfc2136(allon_ca.server, tmp_path, ini, "cd.secure.test")
    assert done.returncode == 0, done.stderr[-3000:]
    chain = tmp_path / "etc" / "live" / "cd.secure.test" / "fullchain.pem"
    assert issued_names(allon_ca, chain, tmp_path) == ["cd.secure.test"]
    records = ("TXT _acme-challenge.cd.secure.test", "CAA secure.test")
    assert_all_on(allon_ca, "cd.secure.test", records, authorizations=1)


def test_certbot_gets_a_name_by_http01_in_the_signed_zone(
    allon_ca: AllOnCa, tmp_path: Path
) -> None:
    done = certbot_standalone(allon_ca.server, tmp_path, allon_ca.http01_port, "ch.secure.test")
    assert done.returncode == 0, done.stderr[-3000:]
    chain = tmp_path / "etc" / "live" / "ch.secure.test" / "fullchain.pem"
    assert issued_names(allon_ca, chain, tmp_path) == ["ch.secure.test"]
    # The perspectives looked the name's address up through their validating resolvers.
    records = ("A ch.secure.test", "CAA secure.test")
    assert_all_on(allon_ca, "ch.secure.test", records, authorizations=1)


def test_lego_gets_nothing_from_the_bogus_zone(allon_ca: AllOnCa, tmp_path: Path) -> None:
    code, said = lego_dns01(allon_ca, tmp_path, "lego.bogus.test")
    assert code != 0
    # lego prints the CA's problem: its type and detail (unbound's Extended DNS Error).
    assert "urn:ietf:params:acme:error:dns" in said, said[-3000:]
    assert re.search(rf"SERVFAIL {BOGUS} looking up TXT for _acme-challenge.lego.bogus.test", said)
    assert not lego_certificate(tmp_path, "lego.bogus.test").exists()
    assert not list((tmp_path / "lego").rglob("*.crt"))
    # The CA's own lookup failed, so the perspectives were not asked to corroborate.
    assert not corroborated(allon_ca.server.log, "lego.bogus.test")
    evidence = recorded_evidence(allon_ca.server.state_dir, "lego.bogus.test")
    assert [(e.mpic_quorum, e.mpic_perspectives) for e in evidence] == [(None, None)]

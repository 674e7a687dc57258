"""DNSSEC test peers: zones signed with BIND's tools, BIND serving them, Debian's unbound
validating in front, all on loopback.

    with running_dnssec_dns(tmp_path) as dnssec:
        dnssec.resolver_port   # unbound: ask it, as the CA's --dns-resolver
        dnssec.named.port      # BIND: RFC 2136 updates (TSIG key UPDATE_KEY), direct questions

BIND is primary for four zones, each with `* A 127.0.0.1` and TXT updates allowed under the
TSIG key `UPDATE_KEY_NAME` (`zonesub TXT`), so dns-01 solvers can publish there:

- `secure.test`: signed with `dnssec-keygen` (a KSK and a ZSK, ECDSA P-256) and
  `dnssec-signzone`; unbound has its KSK as trust anchor. BIND signs the TXT records that
  updates add with the keys in its key-directory. `CAA 0 issue "acmekit"` at the apex.
  `alias.secure.test` is a CNAME into the bogus zone (a CAA lookup that meets a bogus answer
  while the name's own dns-01 TXT record, under it, is secure).
- `bogus.test`: signed the same way, then both signatures over its DNSKEY set are broken
  (one base64 character changed), so no answer from it validates: unbound answers SERVFAIL
  with Extended DNS Error "DNSSEC Bogus" or "DNSKEY Missing".
- `expired.test`: signed with signatures that expired a day ago (their private keys
  removed, the zone not updatable, so BIND cannot renew them): bogus too, the commonest
  DNSSEC failure in the wild. `expired-alias.secure.test` is a CNAME into it.
- `insecure.test`: not signed, and `domain-insecure` in unbound; `CAA 0 issue "acmekit"`.
- `plain.secure.test`: not signed, delegated from `secure.test` without a DS record, so
  unbound proves it insecure through the signed parent's NSEC records.
- `test`: not signed, the parent of the three (CAA tree climbing reaches it).

unbound never leaves the machine: its outgoing interface is 127.0.0.1, the only names it
resolves are under the stub zone `test` (sent to BIND), and every other name is refused by a
local zone for the root. It runs in the foreground with its config in the given directory,
no control channel, no chroot and no user switch; both servers are stopped by their PIDs.
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from acmekit_testkit.acmekit_server import recorded_evidence
from acmekit_testkit.bind import Named, running_named
from acmekit_testkit.ports import free_tcp_udp_port
from acmekit_testkit.processes import logged_process, wait_ready

UNBOUND = "/usr/sbin/unbound"
DNSSEC_KEYGEN = "/usr/bin/dnssec-keygen"
DNSSEC_SIGNZONE = "/usr/bin/dnssec-signzone"
UPDATE_KEY_NAME = "dnssec-update"
UPDATE_KEY_SECRET = base64.b64encode(b"TSIG key for the DNSSEC test zones").decode()
# The CA's [validation] settings for these zones: refuse to start unless the resolver
# validates (secure.test must come back with the AD bit).
DNSSEC_SETTINGS = {
    "validation": {"dnssec": "require-validating-resolver", "dnssec_probe": "secure.test"}
}
# unbound's Extended DNS Error for a bogus answer: "DNSKEY Missing" (or "Signature
# Expired") for the question that first meets the broken keys, "DNSSEC Bogus" once it has
# marked them bad.
BOGUS = r"\((DNSSEC Bogus|DNSKEY Missing|Signature Expired)[^)]*\)"

# TTLs of one second (and a negative TTL of one second in the SOA): unbound's cache must not
# hide a TXT record added a moment after a question about it.
ZONE_HEAD = """\
$TTL 1
@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 1
@ IN NS ns1.{zone}.
ns1 IN A 127.0.0.1
@ IN A 127.0.0.1
* IN A 127.0.0.1
"""
CAA_ACMEKIT = """\
@ IN CAA 0 issue "acmekit"
"""
SECURE_ALIAS = """\
alias IN CNAME alias.bogus.test.
expired-alias IN CNAME expired-alias.expired.test.
"""
# A delegation without DS: the signed parent proves (NSEC) that the child is unsigned.
SECURE_UNSIGNED_CHILD = """\
plain IN NS ns1.secure.test.
"""


@dataclass(frozen=True)
class SignedZone:
    """A zone file signed by `dnssec-signzone`, and the DS-less trust anchor for it: its
    KSK as a DNSKEY record in presentation format."""

    name: str
    file: str
    trust_anchor: str


def sign_zone(
    directory: Path,
    zone: str,
    text: str,
    *,
    break_dnskey_signatures: bool = False,
    validity: tuple[datetime, datetime] | None = None,
) -> SignedZone:
    """Write `text` as `zone`'s file in `directory`, make a KSK and a ZSK there (BIND
    finds them through `key-directory` to sign updates), and sign it into `ZONE.signed`.
    With `break_dnskey_signatures` the RRSIGs over the DNSKEY set are altered afterwards, so
    that no key of the zone, and hence no answer from it, validates. `validity` (inception,
    expiration) dates the signatures, e.g. both in the past; the private keys are then
    removed, so that BIND cannot replace the signatures (serve such a zone without updates)."""
    source = directory / f"{zone}.zone"
    source.write_text(text)
    keygen = [DNSSEC_KEYGEN, "-q", "-a", "ECDSAP256SHA256", "-K", str(directory)]
    ksk = _run([*keygen, "-f", "KSK", zone]).strip()
    _run([*keygen, zone])
    signed = directory / f"{zone}.signed"
    sign = [
        DNSSEC_SIGNZONE, "-q", "-S", "-K", str(directory), "-d", str(directory), "-O", "full",
        "-o", zone, "-f", str(signed), str(source),
    ]  # fmt: skip
    if validity is not None:
        # -P: dnssec-signzone would refuse to write signatures that fail its own check.
        dates = [f"{when:%Y%m%d%H%M%S}" for when in validity]
        sign[1:1] = ["-P", "-s", dates[0], "-e", dates[1]]
    _run(sign)
    if validity is not None:
        for private in directory.glob(f"K{zone}.+*.private"):
            private.unlink()
    if break_dnskey_signatures:
        signed.write_text(_break_dnskey_signatures(signed.read_text()))
    anchor = next(
        line.strip()
        for line in (directory / f"{ksk}.key").read_text().splitlines()
        if line and not line.startswith(";")
    )
    return SignedZone(zone, signed.name, anchor)


def _break_dnskey_signatures(text: str) -> str:
    """Change one character of the last base64 chunk of each RRSIG over the DNSKEY set."""
    out = []
    broken = 0
    for line in text.splitlines(keepends=True):
        if re.search(r"\sRRSIG\s+DNSKEY\s", line):
            head, _, chunk = line.rstrip("\n").rpartition(" ")
            swapped = ("B" if chunk[0] != "B" else "C") + chunk[1:]
            line = f"{head} {swapped}\n"
            broken += 1
        out.append(line)
    if not broken:
        raise RuntimeError("no RRSIG over the DNSKEY set found to break")
    return "".join(out)


def _run(argv: Sequence[str]) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}")
    return done.stdout


def dnssec_named_conf(
    directory: Path, port: int, zones: Mapping[str, str], static: Collection[str] = ()
) -> str:
    """named.conf: authoritative only on 127.0.0.1:`port`, no validation of its own (it
    would try to fetch the root's keys), the zones (name -> file) updatable for TXT but
    for those in `static`."""
    update = f"update-policy {{ grant {UPDATE_KEY_NAME} zonesub TXT; }}; "
    blocks = "".join(
        f'zone "{name}" {{ type primary; file "{file}"; {"" if name in static else update}}};\n'
        for name, file in zones.items()
    )
    return f"""\
options {{
    directory "{directory}";
    key-directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    managed-keys-directory "{directory}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{UPDATE_KEY_NAME}" {{ algorithm hmac-sha256; secret "{UPDATE_KEY_SECRET}"; }};
{blocks}"""


@dataclass(frozen=True)
class Unbound:
    port: int
    pid: int


def unbound_conf(
    directory: Path,
    port: int,
    *,
    stubs: Mapping[str, int],
    trust_anchors: Sequence[str] = (),
    insecure: Sequence[str] = (),
) -> str:
    """unbound.conf for a validating resolver on 127.0.0.1:`port` that resolves only the
    `stubs` zones (name -> port of an authoritative server on 127.0.0.1)."""
    lines = [
        "server:",
        "    interface: 127.0.0.1",
        f"    port: {port}",
        "    do-ip6: no",
        "    do-not-query-localhost: no",
        # Queries leave from loopback only: nothing can reach another machine.
        "    outgoing-interface: 127.0.0.1",
        '    username: ""',
        '    chroot: ""',
        f'    directory: "{directory}"',
        '    pidfile: ""',
        "    use-syslog: no",
        '    logfile: ""',
        "    verbosity: 1",
        "    val-log-level: 2",
        "    ede: yes",
        '    module-config: "validator iterator"',
        "    access-control: 127.0.0.0/8 allow",
        # Only the stub zones are resolved; the root (and so the internet) is refused.
        '    local-zone: "." refuse',
    ]
    lines += [f'    trust-anchor: "{anchor}"' for anchor in trust_anchors]
    lines += [f'    domain-insecure: "{name}"' for name in insecure]
    lines += [f'    local-zone: "{name}." transparent' for name in stubs]
    for name, stub_port in stubs.items():
        lines += ["stub-zone:", f'    name: "{name}"', f"    stub-addr: 127.0.0.1@{stub_port}"]
    lines += ["remote-control:", "    control-enable: no"]
    return "\n".join(lines) + "\n"


def answers(port: int, name: str = "test.") -> bool:
    """Whether a DNS server on 127.0.0.1:`port` answers (with any rcode)."""
    query = dns.message.make_query(name, "SOA")
    try:
        dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return False
    return True


@contextmanager
def running_unbound(
    directory: Path,
    *,
    stubs: Mapping[str, int],
    trust_anchors: Sequence[str] = (),
    insecure: Sequence[str] = (),
) -> Iterator[Unbound]:
    """unbound in the foreground (`-d`) with its config in `directory`, once it answers."""
    port = free_tcp_udp_port()
    config = directory / "unbound.conf"
    config.write_text(
        unbound_conf(directory, port, stubs=stubs, trust_anchors=trust_anchors, insecure=insecure)
    )
    log = directory / "unbound.log"
    first = next(iter(stubs), ".")
    with logged_process([UNBOUND, "-d", "-c", str(config)], log) as proc:
        wait_ready(proc, lambda: answers(port, first + "."), log, "unbound")
        yield Unbound(port, proc.pid)


@dataclass(frozen=True)
class DnssecDns:
    """BIND with the test zones and unbound validating in front of it."""

    named: Named
    unbound: Unbound
    zones: tuple[SignedZone, ...]

    @property
    def resolver_port(self) -> int:
        return self.unbound.port

    @property
    def dns_port(self) -> int:
        """The port a CA is to ask (`--dns-resolver 127.0.0.1:PORT`): unbound's."""
        return self.unbound.port


def _named_answers(port: int) -> bool:
    query = dns.message.make_query("secure.test.", "SOA")
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return False
    return bool(reply.answer)


@contextmanager
def running_dnssec_dns(directory: Path) -> Iterator[DnssecDns]:
    """The zones of this module's docstring in BIND, behind a validating unbound."""
    directory = directory.resolve()
    bind_dir = directory / "bind"
    unbound_dir = directory / "unbound"
    bind_dir.mkdir(exist_ok=True)
    unbound_dir.mkdir(exist_ok=True)
    secure_text = ZONE_HEAD.format(zone="secure.test") + CAA_ACMEKIT
    secure = sign_zone(bind_dir, "secure.test", secure_text + SECURE_ALIAS + SECURE_UNSIGNED_CHILD)
    now = datetime.now(UTC)
    expired = sign_zone(
        bind_dir,
        "expired.test",
        ZONE_HEAD.format(zone="expired.test") + CAA_ACMEKIT,
        validity=(now - timedelta(days=30), now - timedelta(days=1)),
    )
    bogus = sign_zone(
        bind_dir,
        "bogus.test",
        ZONE_HEAD.format(zone="bogus.test") + CAA_ACMEKIT,
        break_dnskey_signatures=True,
    )
    plain = {
        "test.zone": ZONE_HEAD.format(zone="test").replace("* IN A 127.0.0.1\n", ""),
        "insecure.test.zone": ZONE_HEAD.format(zone="insecure.test") + CAA_ACMEKIT,
        "plain.secure.test.zone": ZONE_HEAD.format(zone="plain.secure.test"),
    }
    files = {
        "test": "test.zone",
        "insecure.test": "insecure.test.zone",
        "plain.secure.test": "plain.secure.test.zone",
        "secure.test": secure.file,
        "bogus.test": bogus.file,
        "expired.test": expired.file,
    }
    zones = (secure, bogus, expired)
    with (
        running_named(
            bind_dir,
            lambda d, p: dnssec_named_conf(d, p, files, static={"expired.test"}),
            plain,
            ready=_named_answers,
        ) as named,
        running_test_zone_resolver(unbound_dir, named.port, zones) as unbound,
    ):
        yield DnssecDns(named, unbound, zones)


@contextmanager
def running_test_zone_resolver(
    directory: Path, named_port: int, zones: Sequence[SignedZone]
) -> Iterator[Unbound]:
    """An unbound validating the zones of this module (served by BIND on `named_port`)
    with their trust anchors; several may run side by side, each with its own cache, as
    resolvers in different places do (e.g. one per remote validation perspective)."""
    directory.mkdir(parents=True, exist_ok=True)
    with running_unbound(
        directory,
        stubs={"test": named_port},
        trust_anchors=tuple(zone.trust_anchor for zone in zones),
        insecure=("insecure.test",),
    ) as unbound:
        yield unbound


def write_rfc2136_ini(path: Path, named_port: int) -> Path:
    """certbot's dns-rfc2136 credentials (mode 600) for BIND's test zones on `named_port`."""
    path.write_text(
        "dns_rfc2136_server = 127.0.0.1\n"
        f"dns_rfc2136_port = {named_port}\n"
        f"dns_rfc2136_name = {UPDATE_KEY_NAME}\n"
        f"dns_rfc2136_secret = {UPDATE_KEY_SECRET}\n"
        "dns_rfc2136_algorithm = HMAC-SHA256\n"
    )
    path.chmod(0o600)
    return path


def lego_rfc2136_env(named_port: int) -> dict[str, str]:
    """lego's `--dns rfc2136` settings for BIND's test zones on `named_port` (TSIG
    hmac-sha256; one second between a name's sequential challenges, not lego's 60). The
    TTL is the zones' one second, not lego's 120: lego solves a name's wildcard and apex
    one after the other with one TXT record name, and a validating resolver in front
    would otherwise answer the second validation with the first value from its cache."""
    return {
        "RFC2136_TTL": "1",
        "RFC2136_NAMESERVER": f"127.0.0.1:{named_port}",
        "RFC2136_TSIG_KEY": UPDATE_KEY_NAME,
        "RFC2136_TSIG_SECRET": UPDATE_KEY_SECRET,
        "RFC2136_TSIG_ALGORITHM": "hmac-sha256.",
        "RFC2136_SEQUENCE_INTERVAL": "1",
    }


def recorded_dnssec(ca_state: Path, name: str) -> list[tuple[bool | None, bool | None]]:
    """(dnssec_dcv, dnssec_caa) of every authorization for `name` as the CA whose state
    directory is `ca_state` stored them (migration 0007)."""
    return [(e.dnssec_dcv, e.dnssec_caa) for e in recorded_evidence(ca_state, name)]

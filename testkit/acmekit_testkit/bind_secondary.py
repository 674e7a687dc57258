"""BIND 9 (Debian's named) as a secondary of `acmekit dns`, on a loopback port of its own.

    secondary = BindSecondary(tmp_path / "s1", "x.test", [("127.0.0.1", primary_port)], key)
    with secondary.running():
            secondary.serial()          # the SOA serial it serves, None before its first transfer
    with secondary.running():       # again, on the same port, from the zone file it kept
        secondary.log_text()        # what named logged, every run (transfers, NOTIFYs)

The zone comes from the primaries (in order) with TSIG key `key` (`primaries { ... key
K; }`), NOTIFY is accepted from 127.0.0.1, and the zone file is kept in the directory,
so a secondary that is stopped and started again starts from the serial it had and asks
for an IXFR. named is stopped by its PID when the block ends.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.tsig

from acmekit_testkit.bind import NAMED
from acmekit_testkit.ports import free_tcp_udp_port
from acmekit_testkit.processes import logged_process, wait_ready

LOOPBACK = "127.0.0.1"


@dataclass
class BindSecondary:
    directory: Path
    zone: str
    primaries: Sequence[tuple[str, int]]
    key: dns.tsig.Key
    port: int = field(default_factory=free_tcp_udp_port)

    def conf(self) -> str:
        d, zone = self.directory, self.zone.rstrip(".")
        algorithm = self.key.algorithm.to_text().rstrip(".")
        secret = self.key.secret
        assert isinstance(secret, bytes)
        primaries = "".join(
            f' {host} port {port} key "{self.key.name.to_text().rstrip(".")}";'
            for host, port in self.primaries
        )
        return f"""\
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {self.port} {{ {LOOPBACK}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;  // no trust anchor to fetch: named asks nothing of the root
    notify no;
    allow-notify {{ {LOOPBACK}; }};
    transfer-source {LOOPBACK};
    notify-source {LOOPBACK};
}};
controls {{ }};
logging {{
    category xfer-in {{ default_stderr; }};
    category notify {{ default_stderr; }};
}};
key "{self.key.name.to_text().rstrip(".")}" {{
    algorithm {algorithm};
    secret "{base64.b64encode(secret).decode()}";
}};
zone "{zone}" {{
    type secondary;
    file "{d}/{zone}.db";
    masterfile-format text;
    primaries {{{primaries} }};
}};
"""

    @contextmanager
    def running(self, *, wait_for_zone: bool = True) -> Iterator[BindSecondary]:
        """named in the foreground; once it answers (with the zone, if `wait_for_zone`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "named.conf"
        config.write_text(self.conf())
        argv = [NAMED, "-g", "-c", str(config)]
        run_log = self.directory / f"named-{len(list(self.directory.glob('named-*.log')))}.log"
        with logged_process(argv, run_log) as proc:
            wait_ready(
                proc,
                lambda: self.serial() is not None if wait_for_zone else self._answers(),
                run_log,
                "named (secondary)",
                timeout=30,
            )
            yield self

    def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message | None:
        query = dns.message.make_query(name, rdtype)
        try:
            return dns.query.udp(query, LOOPBACK, port=self.port, timeout=0.5)
        except (dns.exception.DNSException, OSError):
            return None

    def _answers(self) -> bool:
        return self._query(self.zone, dns.rdatatype.SOA) is not None

    def serial(self) -> int | None:
        """The zone's serial as the secondary answers it (None if it does not, yet)."""
        reply = self._query(self.zone, dns.rdatatype.SOA)
        if reply is None or reply.rcode() != dns.rcode.NOERROR:
            return None
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                soa = rrset[0]
                assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
                return int(soa.serial)
        return None

    def txt(self, name: str) -> list[str]:
        """The TXT values the secondary answers for `name` ([] for none or no answer)."""
        reply = self._query(name, dns.rdatatype.TXT)
        if reply is None:
            return []
        return sorted(
            b"".join(rd.strings).decode()
            for rrset in reply.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rd in rrset
        )

    def log_text(self) -> str:
        """Everything named logged, over every run so far (the current one included)."""
        runs = sorted(self.directory.glob("named-*.log"))
        return "".join(p.read_text(errors="replace") for p in runs)

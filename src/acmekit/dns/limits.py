"""What a message may hold, judged from its 12-octet header before dnspython parses it.

dnspython's parse costs about a microsecond per label it decompresses, and a record
owned by a two-octet compression pointer to a 126-label name makes it decompress 126
labels: 5,400 such records in one 65 KB message took 0.8 s of the event loop that
serves every DNS client and the HTTP API. Nothing this server answers needs many
records, so a message is refused on its section counts and its size, in constant time,
before it is parsed:

- QUERY (RFC 1035 §4.1.2): one question, no answer record, at most one authority
  record (IXFR's SOA, RFC 1995 §3), at most two additional records (an OPT, RFC 6891
  §6.1.1, and a TSIG, RFC 8945 §5.1), and at most `QUERY_SIZE` octets: a question, an
  OPT with a cookie or padding, a TSIG and an SOA fit with room to spare.
- UPDATE (RFC 2136 §2): one zone, at most `UPDATE_PREREQUISITES` prerequisites and
  `UPDATE_RECORDS` updates, at most two additional records (OPT and TSIG), at most
  `UPDATE_SIZE` octets. An ACME client sends one record per UPDATE.
- any other opcode (answered NOTIMP after the parse): the shape of a NOTIFY (RFC 1996
  §3.7: one question, at most one SOA in the answer) and at most `QUERY_SIZE` octets.

Beyond these a message is answered FORMERR from its header alone (`formerr` in
`acmekit.dns.handler`: ID, opcode and RD, no sections), as for one dnspython cannot
parse: it is not a message this server could use (RFC 1035 §4.1.1). Within them a
message holds at most 83 records, so its parse is bounded whatever its names point at;
docs/decisions.md gives the worst cost measured.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER_LEN = 12
QUERY_SIZE = 4096
UPDATE_SIZE = 8192
UPDATE_PREREQUISITES = 16
UPDATE_RECORDS = 64
QUERY, NOTIFY, UPDATE = 0, 4, 5
FORMERR = 1


@dataclass(frozen=True)
class Bound:
    """The most a message of one opcode may hold: octets, and records per section
    (question or zone, answer or prerequisite, authority or update, additional)."""

    size: int
    counts: tuple[int, int, int, int]
    rcode: int  # the answer to a message beyond the bound


BOUNDS = {
    QUERY: Bound(QUERY_SIZE, (1, 0, 1, 2), FORMERR),
    UPDATE: Bound(UPDATE_SIZE, (1, UPDATE_PREREQUISITES, UPDATE_RECORDS, 2), FORMERR),
}
OTHER = Bound(QUERY_SIZE, (1, 1, 1, 2), FORMERR)


def excess(wire: bytes) -> int | None:
    """The RCODE to refuse `wire` (at least 12 octets) with, unparsed, when it holds
    more than its opcode needs; None when it is within bounds."""
    bound = BOUNDS.get(wire[2] >> 3 & 0x0F, OTHER)
    if len(wire) > bound.size:
        return bound.rcode
    for i, most in enumerate(bound.counts):
        if (wire[4 + 2 * i] << 8 | wire[5 + 2 * i]) > most:
            return bound.rcode
    return None

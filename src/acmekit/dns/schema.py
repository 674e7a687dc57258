"""The tables of a record store shared by several `acmekit dns` processes (`--db URL`),
versioned by the migrations next to this module. How they are used: `acmekit.dns.shared`.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# One row: the serial of the last change. Taking it (UPDATE ... SET serial = serial + 1)
# orders every writer's change, across processes.
zone_serial = sa.Table(
    "dns_serial",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("serial", sa.BigInteger, nullable=False),
)

# The records now, in the order they were added (`seq`), which acme-dns's "keep the
# latest two" rule needs; one row per record (`digest` of name, type and rdata, unique).
records = sa.Table(
    "dns_records",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    sa.Column("rtype", sa.String(16), nullable=False),
    sa.Column("rdata", sa.Text, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.UniqueConstraint("digest", name="uq_dns_records_digest"),
)

# The changes of the last serials (one row per record added or deleted), read by the
# other processes to catch up and kept as the journal for IXFR.
changes = sa.Table(
    "dns_changes",
    metadata,
    sa.Column("serial", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("added", sa.Boolean, nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("rtype", sa.String(16), nullable=False),
    sa.Column("rdata", sa.Text, nullable=False),
)

# Per TSIG key, the MACs (SHA-256, hex) of the UPDATEs accepted and the last second their
# Time Signed is within the fudge: RFC 8945 §5.2.3's replay check, shared by the
# processes so that a request replayed to another one is refused there too.
tsig_times = sa.Table(
    "dns_tsig_times",
    metadata,
    sa.Column("key_name", sa.String(255), primary_key=True, autoincrement=False),
    sa.Column("mac", sa.String(64), primary_key=True, autoincrement=False),
    sa.Column("valid_until", sa.BigInteger, nullable=False),
)
